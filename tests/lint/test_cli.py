"""`conveyor lint [PATH] [--json] [--include-tests]`, through the console script's entry point."""

from __future__ import annotations

import json

from .conftest import notebook_text

APP = """
from conveyor import config

FORECAST_URL = "https://forecast.example.com/api"
DB = "postgresql://ana:s3cret@warehouse.example.com/analytics"


def save(frame):
    frame.to_csv("/data/out/scores.csv")
"""


def test_a_clean_app_exits_0(project, conveyor_lint):
    root = project({"app.py": 'from conveyor import config\nURL = config.get("forecast_url")\n'})
    code, out, err = conveyor_lint(str(root))
    assert code == 0, err
    assert out.strip() == "No hard-coded hosts, URLs or output paths (1 file checked)."
    assert err == ""


def test_findings_are_grouped_by_file_with_their_fixes_and_exit_1(project, conveyor_lint):
    root = project(
        {
            "app.py": APP,
            "report.ipynb": notebook_text("%matplotlib inline\nURL = 'http://localhost:8000'\n"),
        }
    )
    code, out, err = conveyor_lint(str(root))
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0] == f"{root.as_posix()}/app.py"
    assert lines[1].split() == ["3:16", "url", "https://forecast.example.com/api"]
    assert "add forecast_url to config.yml" in lines[3]
    assert 'config.get("forecast_url")' in lines[3]
    assert "postgresql://ana:***@warehouse.example.com/analytics" in out
    assert "s3cret" not in out
    assert 'conveyor.data.connect("warehouse")' in out
    assert 'conveyor.data.output_path("scores.csv")' in out
    assert f"{root.as_posix()}/report.ipynb" in lines
    assert any(line.split()[:5] == ["cell", "1", "line", "2:7", "url"] for line in lines)
    assert lines[-1].startswith("4 findings in 2 files (2 files checked).")
    assert "# conveyor: ignore" in lines[-1]


def test_paths_are_shown_as_given(project, conveyor_lint, monkeypatch):
    root = project({"app.py": APP, "sub/mod.py": APP})
    monkeypatch.chdir(root)
    code, out, _ = conveyor_lint()
    assert code == 1
    assert out.splitlines()[0] == "app.py"
    assert "sub/mod.py" in out.splitlines()
    code, out, _ = conveyor_lint("sub/mod.py")
    assert out.splitlines()[0] == "sub/mod.py"


def test_json_is_a_list_of_findings(project, conveyor_lint):
    root = project({"app.py": APP})
    code, out, err = conveyor_lint(str(root), "--json")
    assert code == 1, err
    data = json.loads(out)
    assert [d["kind"] for d in data] == ["url", "connection-string", "output-path"]
    first = data[0]
    assert first == {
        "path": f"{root.as_posix()}/app.py",
        "line": 3,
        "column": 16,
        "cell": None,
        "kind": "url",
        "literal": "https://forecast.example.com/api",
        "message": first["message"],
        "key": "forecast_url",
        "fix": 'config.get("forecast_url")',
        "suggestion": first["suggestion"],
    }
    assert "s3cret" not in out


def test_json_of_a_clean_app_is_an_empty_list(project, conveyor_lint):
    code, out, _ = conveyor_lint(str(project({"app.py": "x = 1\n"})), "--json")
    assert (code, json.loads(out)) == (0, [])


def test_unparsable_files_warn_on_stderr_and_do_not_change_the_exit_code(project, conveyor_lint):
    root = project({"broken.py": "def f(:\n", "app.py": "x = 1\n"})
    code, out, err = conveyor_lint(str(root))
    assert code == 0
    assert f"warning: {root.as_posix()}/broken.py:1: not checked: cannot be parsed" in err
    assert "1 not fully checked (see the warnings)" in out
    code, out, err = conveyor_lint(str(root), "--json")
    assert (code, json.loads(out)) == (0, [])
    assert "broken.py" in err


def test_include_tests(project, conveyor_lint):
    root = project({"app.py": "x = 1\n", "tests/test_app.py": 'BASE = "http://localhost:8000"\n'})
    assert conveyor_lint(str(root))[0] == 0
    code, out, _ = conveyor_lint(str(root), "--include-tests")
    assert code == 1
    assert f"{root.as_posix()}/tests/test_app.py" in out


def test_usage_errors_exit_64(tmp_path, conveyor_lint):
    code, _, err = conveyor_lint(str(tmp_path / "missing"))
    assert code == 64
    assert "does not exist" in err
    assert conveyor_lint("--bogus")[0] == 64
