"""`conveyor init` on small real projects: what it writes, what it never overwrites, what it
says, and that Conveyor itself accepts the result."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conveyor import config
from conveyor.bundles.app_file import read_app_file
from conveyor.cli import main
from conveyor.domain.apps import AppType, SmokeCheck

FLASK_APP = """
    from flask import Flask

    app = Flask(__name__)


    @app.route("/health")
    def health():
        return "ok"
    """
FASTAPI_APP = """
    from fastapi import FastAPI

    api = FastAPI()


    @api.get("/")
    def root():
        return {"hello": "world"}
    """
WORKFLOW = ".github/workflows/conveyor.yml"


def _results(out: str) -> dict[str, str]:
    """The FILE/RESULT table of init's output, by the file as shown (relative to the working
    directory, which the tests' fixtures set to tmp_path)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("FILE "))
    results = {}
    for line in lines[start + 1 :]:
        if not line or line.startswith(("note:", "Next steps")):
            break
        path, result = re.split(r"\s{2,}", line, maxsplit=1)
        results[path] = result
    return results


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_fresh_project_gets_every_file_and_conveyor_accepts_them(project, init, tmp_path):
    root = project({"app.py": FASTAPI_APP, "requirements.txt": "fastapi"}, git=True)
    code, out, err = init(str(root))
    assert code == 0, err
    assert "app hello: fastapi, entrypoint app:api; app.py imports fastapi" in out
    for name in ("conveyor.yml", "config.yml", "tests/test_smoke.py"):
        assert (root / name).is_file()
    assert (tmp_path / WORKFLOW).is_file()  # at the repository's root, where GitHub reads it
    spec = read_app_file(root)
    assert (spec.name, spec.type, spec.entrypoint) == ("hello", AppType.FASTAPI, "app:api")
    assert spec.requirements == "requirements.txt"
    assert spec.health == "/"
    assert spec.checks.smoke == (SmokeCheck(path="/", status=200),)
    assert spec.checks.tests == "python -m pytest -q tests"
    assert dict(spec.branches) == {"test": "test", "main": "prod"}
    # The tests check runs pytest in the app's runtime: it is added to the requirements.
    assert (root / "requirements.txt").read_text() == "fastapi\npytest\n"
    assert _results(out)["hello/requirements.txt"].startswith("updated: added pytest")
    workflow = yaml.safe_load((tmp_path / WORKFLOW).read_text())
    assert workflow["jobs"]["conveyor"]["defaults"]["run"]["working-directory"] == "hello"


def test_the_output_lists_the_files_and_the_next_steps(project, init):
    root = project({"app.py": FASTAPI_APP}, git=True)
    _, out, _ = init(str(root))
    assert _results(out) == {
        "hello/conveyor.yml": "written",
        "hello/config.yml": "written",
        "hello/tests/test_smoke.py": "written",
        "hello/requirements.txt": "written: add the packages your code imports",
        WORKFLOW: "written",
    }
    steps = out.split("Next steps:")[1]
    assert "conveyor users add ci --role test:developer --role prod:deployer" in steps
    assert "conveyor token create --user ci --expires 365" in steps
    assert "Settings > Secrets and variables > Actions" in steps
    assert "secret    CONVEYOR_TOKEN" in steps
    assert "variable  CONVEYOR_SERVER" in steps
    assert "git add " in steps and "git commit" in steps and "git push" in steps
    assert "test -> test, main -> prod" in steps


def test_gitlab_gets_gitlab_ci_and_gitlab_settings(project, init, tmp_path):
    root = project({"app.py": FASTAPI_APP}, git=True)
    code, out, _ = init(str(root), "--ci", "gitlab")
    assert code == 0
    assert (tmp_path / ".gitlab-ci.yml").is_file() and not (tmp_path / WORKFLOW).exists()
    assert "Settings > CI/CD > Variables" in out
    assert "masked variable  CONVEYOR_TOKEN" in out


def test_nothing_is_overwritten_without_force(project, init, tmp_path):
    root = project({"app.py": FASTAPI_APP, "requirements.txt": "fastapi\n"}, git=True)
    init(str(root))
    (root / "conveyor.yml").write_text((root / "conveyor.yml").read_text() + "workers: 2\n")
    (root / "tests/test_smoke.py").write_text("# mine\n")
    (tmp_path / WORKFLOW).write_text("# mine\n")
    before = _tree(tmp_path)
    code, out, _ = init(str(root))
    assert code == 0
    assert _tree(tmp_path) == before
    assert _results(out) == {
        "hello/conveyor.yml": "kept: exists; --force replaces it",
        "hello/config.yml": "kept: exists: your settings stay as they are",
        "hello/tests/test_smoke.py": "kept: exists; --force replaces it",
        WORKFLOW: "kept: exists; --force replaces it",
    }
    assert "Nothing written: every file exists" in out


def test_force_replaces_everything_but_config_yml(project, init, tmp_path):
    root = project({"app.py": FASTAPI_APP, "requirements.txt": "fastapi\n"}, git=True)
    init(str(root))
    (root / "config.yml").write_text("default:\n  mine: true\n")
    (root / "tests/test_smoke.py").write_text("# mine\n")
    (tmp_path / WORKFLOW).write_text("# mine\n")
    (root / "conveyor.yml").write_text("name: other\ntype: flask\n")
    code, out, _ = init(str(root), "--force")
    assert code == 0
    assert read_app_file(root).name == "hello"
    assert "# mine" not in (root / "tests/test_smoke.py").read_text()
    assert "# mine" not in (tmp_path / WORKFLOW).read_text()
    assert (root / "config.yml").read_text() == "default:\n  mine: true\n"
    # pytest is there since the first run: requirements.txt is not touched again.
    assert (root / "requirements.txt").read_text() == "fastapi\npytest\n"
    assert _results(out) == {
        "hello/conveyor.yml": "replaced",
        "hello/config.yml": "kept: exists: your settings stay as they are",
        "hello/tests/test_smoke.py": "replaced",
        WORKFLOW: "replaced",
    }


def test_an_existing_config_yml_is_kept_and_said_so(project, init):
    root = project({"app.py": FASTAPI_APP, "config.yml": "default:\n  url: x\n"})
    code, out, _ = init(str(root))
    assert code == 0
    assert (root / "config.yml").read_text() == "default:\n  url: x\n"
    assert _results(out)["hello/config.yml"] == "kept: exists: your settings stay as they are"


def test_the_config_yml_written_resolves_in_every_environment(project, init):
    root = project({"index.html": "<h1>hi</h1>\n"})
    init(str(root))
    path = root / "config.yml"
    levels = {
        env: config.get("log_level", config=env, file=path)
        for env in ("default", "dev", "test", "prod")
    }
    assert levels == {"default": "DEBUG", "dev": "DEBUG", "test": "INFO", "prod": "WARNING"}
    # The commented examples are valid: uncommented, they read the secret from the environment.
    text = path.read_text().replace("  # api_", "  api_")
    path.write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("API_KEY", "s3cret")
        assert config.get("api_key", config="prod", file=path) == "s3cret"
        assert config.get("api_url", config="prod", file=path) == "https://api.example.com"
        patch.delenv("API_KEY")
        assert config.get("api_key", config="dev", file=path) == "local-only-key"


@pytest.mark.parametrize(
    ("files", "expected", "said"),
    [
        pytest.param(
            {"requirements.txt": "fastapi"},
            "fastapi\npytest\n",
            "updated: added pytest",
            id="no-final-newline",
        ),
        pytest.param(
            {"requirements.txt": "fastapi\nPyTest>=8\n"},
            "fastapi\nPyTest>=8\n",
            None,
            id="already-there",
        ),
        pytest.param(
            {"requirements.txt": "fastapi==0.115.0 --hash=sha256:" + "a" * 64 + "\n"},
            "fastapi==0.115.0 --hash=sha256:" + "a" * 64 + "\n",
            "requirements.txt is pinned with hashes, so pytest was not added",
            id="hashed",
        ),
    ],
)
def test_pytest_joins_the_requirements_the_tests_need(project, init, files, expected, said):
    root = project({"app.py": FASTAPI_APP, **files})
    code, out, _ = init(str(root))
    assert code == 0
    assert (root / "requirements.txt").read_text() == expected
    if said:
        assert said in out
    else:
        assert "hello/requirements.txt" not in _results(out)


def test_a_pyproject_without_pytest_gets_advice_not_edits(project, init):
    pyproject = '[project]\nname = "hello"\nversion = "1"\ndependencies = ["fastapi"]\n'
    root = project({"app.py": FASTAPI_APP, "pyproject.toml": pyproject})
    code, out, _ = init(str(root))
    assert code == 0
    assert (root / "pyproject.toml").read_text() == pyproject
    assert "note: pyproject.toml does not list pytest" in out
    assert read_app_file(root).requirements == "pyproject.toml"


def test_an_app_without_requirements_gets_a_requirements_txt(project, init):
    root = project({"app.py": FASTAPI_APP})
    code, out, _ = init(str(root))
    assert code == 0
    lines = (root / "requirements.txt").read_text().splitlines()
    assert [line.split("#")[0].strip() for line in lines[1:]] == ["fastapi", "pytest"]
    assert _results(out)["hello/requirements.txt"] == "written: add the packages your code imports"


def test_the_name_comes_from_the_directory(project, init):
    root = project({"index.html": "hi\n"}, where="Sales Forecast (v2)")
    init(str(root))
    assert read_app_file(root).name == "sales-forecast-v2"


@pytest.mark.parametrize(
    ("args", "where", "message"),
    [
        (["--name", "Sales_Forecast"], "ok", "--name 'Sales_Forecast' is not an app name"),
        ([], "2024", "cannot make an app name from the directory name '2024': pass --name"),
    ],
)
def test_a_bad_name_is_a_clear_error_and_nothing_is_written(project, init, args, where, message):
    root = project({"index.html": "hi\n"}, where=where)
    code, out, err = init(str(root), *args)
    assert code == 1
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert sorted(p.name for p in root.iterdir()) == ["index.html"]


def test_an_unclear_type_without_a_terminal_lists_the_candidates(project, init):
    root = project(
        {
            "api.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            "ui.py": "import streamlit as st\n",
        }
    )
    code, out, err = init(str(root))
    assert code == 1
    assert "error: cannot tell what kind of app" in err
    assert "streamlit  ui.py imports streamlit" in err
    assert "fastapi    api.py imports fastapi" in err
    assert "--type streamlit or --type fastapi" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in root.iterdir()) == ["api.py", "ui.py"]
    code, _, _ = init(str(root), "--type", "fastapi")
    assert code == 0 and read_app_file(root).entrypoint == "api:app"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_unclear_type_at_a_terminal_is_asked(project, init, monkeypatch):
    root = project(
        {
            "api.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            "ui.py": "import streamlit as st\n",
        }
    )
    monkeypatch.setattr(sys, "stdin", _Terminal("streamlit\n"))
    code, out, err = init(str(root))
    assert code == 0, err
    assert "Which app should Conveyor deploy?" in out
    spec = read_app_file(root)
    assert (spec.type, spec.entrypoint) == (AppType.STREAMLIT, "ui.py")


def test_an_existing_conveyor_yml_is_kept_and_its_branches_drive_the_ci_file(
    project, init, tmp_path
):
    app_file = "name: board\ntype: streamlit\nci:\n  branches: {develop: dev, main: prod}\n"
    root = project({"app.py": "import streamlit\n", "conveyor.yml": app_file}, git=True)
    code, out, _ = init(str(root), "--type", "flask")
    assert code == 0
    assert (root / "conveyor.yml").read_text() == app_file
    assert "app board: streamlit, entrypoint app.py (the default), as conveyor.yml says" in out
    assert "note: conveyor.yml exists, so --type changed nothing" in out
    assert "note: conveyor.yml has no `checks.tests`" in out
    workflow = yaml.safe_load((tmp_path / WORKFLOW).read_text())
    assert workflow[True]["push"]["branches"] == ["develop", "main"]


def test_an_invalid_existing_conveyor_yml_is_named_with_the_way_out(project, init):
    root = project({"app.py": "import streamlit\n", "conveyor.yml": "name: Board\ntype: x\n"})
    code, _, err = init(str(root))
    assert code == 1
    assert "field `name`" in err and "pass --force to write a new one" in err


def test_outside_a_git_repository_the_ci_file_goes_in_the_app(project, init):
    root = project({"app.py": FASTAPI_APP})
    code, out, _ = init(str(root))
    assert code == 0
    assert (root / WORKFLOW).is_file()
    assert "is not in a git repository" in out


def test_a_missing_directory_is_a_usage_error(init, tmp_path):
    code, _, err = init(str(tmp_path / "nowhere"))
    assert code == 64 and "does not exist" in err


def test_a_freshly_initialised_flask_project_bundles(project, init, capsys):
    root = project({"app.py": FLASK_APP, "requirements.txt": "flask\n"})
    code, _, err = init(str(root))
    assert code == 0, err
    spec = read_app_file(root)
    assert (spec.type, spec.entrypoint, spec.health) == (AppType.FLASK, "app:app", "/health")
    code = main(["bundle", str(root), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    built = json.loads(captured.out)
    assert built["app"] == "hello" and built["type"] == "flask"
    lock = (root / "conveyor.lock").read_text()
    assert "\nflask==" in lock and "\npytest==" in lock and "\ngunicorn==" in lock


def test_the_ci_file_written_by_init_passes_the_schema(project, init, tmp_path):
    checker = Path(sys.executable).parent / "check-jsonschema"
    root = project({"app.py": FASTAPI_APP}, git=True)
    init(str(root), "--ci", "gitlab")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.gitlab-ci", str(tmp_path / ".gitlab-ci.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
