"""Notebooks: code cells are read as Python, IPython's own lines left out, findings placed by
cell and line."""

from __future__ import annotations

from conveyor.lint import Kind, lint

from .conftest import notebook_text


def test_findings_are_placed_by_cell_counting_markdown_and_line_within_it(project):
    root = project(
        {
            "report.ipynb": notebook_text(
                ("markdown", "# Report\nData from https://forecast.example.com"),
                ["import pandas as pd\n", "frame = pd.DataFrame()\n"],
                "total = 1\nframe.to_csv('/data/out/scores.csv')\n",
            )
        }
    )
    report = lint(root)
    assert report.problems == ()
    [finding] = report.findings
    assert (finding.path, finding.cell, finding.line, finding.column) == ("report.ipynb", 3, 2, 14)
    assert finding.where == "report.ipynb cell 3 line 2 col 14"
    assert finding.kind is Kind.OUTPUT_PATH


def test_magics_and_shell_lines_are_skipped_and_lines_keep_their_numbers(project):
    root = project(
        {
            "explore.ipynb": notebook_text(
                [
                    "%matplotlib inline\n",
                    "!pip install pandas\n",
                    "files = !ls data\n",
                    "for name in files:\n",
                    "    !echo {name}\n",
                    "%time total = 1\n",
                    "frame?\n",
                    "!curl https://forecast.example.com/ \\\n",
                    "    -o /tmp/x\n",
                    "URL = 'https://forecast.example.com'\n",
                ]
            )
        }
    )
    report = lint(root)
    assert report.problems == ()
    [finding] = report.findings
    assert (finding.cell, finding.line, finding.literal) == (1, 10, "https://forecast.example.com")


def test_a_line_starting_with_percent_in_valid_python_is_python(project):
    root = project(
        {"n.ipynb": notebook_text("x = (10\n     % 3)\nURL = 'https://a.example.com'\n")}
    )
    [finding] = lint(root).findings
    assert finding.line == 3


def test_cell_magics_in_other_languages_are_left_out_python_ones_read(project):
    root = project(
        {
            "n.ipynb": notebook_text(
                "%%bash\ncurl https://forecast.example.com > /data/out.csv\n",
                "%%sql\nSELECT * FROM t WHERE url = 'https://x.example.com'\n",
                "%%time\nDB = 'postgresql://warehouse.example.com/sales'\n",
            )
        }
    )
    report = lint(root)
    assert report.problems == ()
    assert [(f.cell, f.line, f.kind) for f in report.findings] == [(3, 2, Kind.CONNECTION)]


def test_ignore_comments_work_in_cells(project):
    root = project(
        {"n.ipynb": notebook_text("URL = 'https://forecast.example.com'  # conveyor: ignore\n")}
    )
    assert lint(root).ok


def test_a_cell_that_does_not_parse_is_a_problem_and_the_others_are_still_read(project):
    root = project(
        {
            "n.ipynb": notebook_text(
                "def broken(:\n    pass\n",
                "URL = 'https://forecast.example.com'\n",
            )
        }
    )
    report = lint(root)
    [problem] = report.problems
    assert problem.where == "n.ipynb cell 1 line 1"
    assert "cannot be parsed" in problem.message
    assert [f.cell for f in report.findings] == [2]


def test_a_file_that_is_not_a_notebook_is_a_problem_not_a_crash(project):
    root = project({"broken.ipynb": "{not json", "list.ipynb": "[]", "app.py": "x = 1\n"})
    report = lint(root)
    assert report.ok
    assert sorted(p.path for p in report.problems) == ["broken.ipynb", "list.ipynb"]
    assert "not valid JSON" in next(p for p in report.problems if p.path == "broken.ipynb").message


def test_a_notebook_in_another_language_is_left_out(project):
    root = project(
        {"analysis.ipynb": notebook_text('con <- dbConnect(host = "db.example.com")', language="R")}
    )
    report = lint(root)
    assert report.ok and report.problems == ()


def test_a_notebook_without_metadata_is_taken_for_python(project):
    root = project(
        {
            "old.ipynb": '{"cells": [{"cell_type": "code", "source": '
            '"URL = \\"https://forecast.example.com\\""}]}'
        }
    )
    [finding] = lint(root).findings
    assert (finding.cell, finding.line) == (1, 1)
