"""Which files are read, and what happens with files that cannot be."""

from __future__ import annotations

from conveyor.lint import lint

from .conftest import notebook_text

URL = 'URL = "https://forecast.example.com"\n'


def test_environments_caches_hidden_and_tool_directories_are_skipped(project):
    root = project(
        {
            "app.py": URL,
            ".venv/lib/site.py": URL,
            "venv/lib/site.py": URL,
            "env/pyvenv.cfg": "home = /usr/bin\n",
            "env/lib/site.py": URL,
            "__pycache__/app.py": URL,
            ".git/hooks/x.py": URL,
            ".conveyor/bundles/x.py": URL,
            "node_modules/pkg/x.py": URL,
            ".ipynb_checkpoints/report-checkpoint.ipynb": notebook_text(URL),
            ".hidden.py": URL,
            "pkg/mod.py": URL,
            "pkg/sub/deep.py": URL,
            "notes.txt": URL,
        }
    )
    report = lint(root)
    assert sorted(f.path for f in report.findings) == ["app.py", "pkg/mod.py", "pkg/sub/deep.py"]
    assert report.files == 3


def test_tests_are_left_out_unless_asked_for(project):
    root = project(
        {
            "app.py": "x = 1\n",
            "tests/test_api.py": 'BASE = "http://localhost:8000"\n',
            "test/helpers.py": URL,
            "test_smoke.py": URL,
            "checks_test.py": URL,
            "conftest.py": URL,
            "pkg/tests/test_x.py": URL,
        }
    )
    assert lint(root).ok
    assert lint(root).files == 1
    included = lint(root, include_tests=True)
    assert sorted(f.path for f in included.findings) == [
        "checks_test.py",
        "conftest.py",
        "pkg/tests/test_x.py",
        "test/helpers.py",
        "test_smoke.py",
        "tests/test_api.py",
    ]


def test_a_file_named_is_read_whatever_its_name(project):
    root = project({"tests/test_api.py": URL})
    report = lint(root / "tests" / "test_api.py")
    assert [(f.path, f.line) for f in report.findings] == [("test_api.py", 1)]


def test_syntax_errors_are_problems_and_the_rest_is_still_checked(project):
    root = project({"broken.py": "def f(:\n    pass\n", "app.py": URL})
    report = lint(root)
    [problem] = report.problems
    assert (problem.path, problem.line) == ("broken.py", 1)
    assert problem.where == "broken.py:1"
    assert [f.path for f in report.findings] == ["app.py"]
    assert report.files == 2


def test_undecodable_files_are_problems(project, tmp_path):
    root = project({"app.py": "x = 1\n"})
    (root / "latin.py").write_bytes(b'NAME = "caf\xe9"\n')
    (root / "nul.py").write_bytes(b"x = 1\x00\n")
    report = lint(root)
    assert sorted(p.path for p in report.problems) == ["latin.py", "nul.py"]


def test_a_coding_cookie_is_honoured_and_columns_count_characters(project, tmp_path):
    root = project({})
    (root / "latin.py").write_bytes(
        b"# -*- coding: latin-1 -*-\nNAME, URL = 'caf\xe9', 'https://forecast.example.com'\n"
        b"X = {'\xe9\xe9': 1, 'url': 'https://forecast.example.com'}\n"
    )
    report = lint(root)
    assert report.problems == ()
    assert [(f.line, f.column) for f in report.findings] == [(2, 21), (3, 22)]


def test_invalid_escapes_in_the_app_s_strings_do_not_warn(project):
    # pytest turns warnings into errors here: a SyntaxWarning would fail this test.
    root = project({"app.py": 'PATTERN = "\\d+"\nURL = "https://forecast.example.com"\n'})
    assert len(lint(root).findings) == 1


def test_an_empty_directory_is_clean(tmp_path):
    report = lint(tmp_path)
    assert report.ok and report.files == 0


def test_a_directory_that_cannot_be_listed_is_a_problem(project, monkeypatch):
    import errno
    import os

    from conveyor.lint import files

    root = project({"app.py": URL, "locked/mod.py": URL})
    walk = os.walk

    def walk_without_locked(top, onerror=None, **kwargs):
        for directory, directories, names in walk(top, onerror=onerror, **kwargs):
            if "locked" in directories:  # as os.walk does for a directory it cannot list
                directories.remove("locked")
                denied = PermissionError(errno.EACCES, "Permission denied", str(root / "locked"))
                onerror(denied)
            yield directory, directories, names

    monkeypatch.setattr(files.os, "walk", walk_without_locked)
    report = lint(root)
    assert [f.path for f in report.findings] == ["app.py"]
    [problem] = report.problems
    assert problem.path == str(root / "locked")
    assert problem.message == "cannot be listed: Permission denied"
