"""The CI files `conveyor init` writes: a GitHub Actions workflow or a GitLab CI file that run
`conveyor ci` on every pull (merge) request, where it checks the app, and on every push to a
branch that conveyor.yml's ``ci.branches`` maps to an environment, where it releases there.

Both install Conveyor with ``pip install "$CONVEYOR_PIP_SPEC"`` (a CI variable; ``conveyor``
when unset) and reach the server with ``CONVEYOR_SERVER`` and ``CONVEYOR_TOKEN`` from the CI
settings. Written as text so that the comments that explain them stay."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from enum import StrEnum

from conveyor.domain.environments import DEFAULT_ENVIRONMENTS
from conveyor.errors import InvalidInput
from conveyor.scaffold.yaml_text import scalar


class Provider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"


#: Where each provider's file goes, relative to the repository's root.
CI_FILES: dict[Provider, str] = {
    Provider.GITHUB: ".github/workflows/conveyor.yml",
    Provider.GITLAB: ".gitlab-ci.yml",
}
PYTHON_VERSION = "3.12"
DEFAULT_PIP_SPEC = "conveyor"
CHECKOUT_ACTION = "actions/checkout@v5"
SETUP_PYTHON_ACTION = "actions/setup-python@v6"
GITLAB_IMAGE = f"python:{PYTHON_VERSION}"


@dataclass(frozen=True)
class Setting:
    """A secret or variable the CI file reads, set in the provider's settings."""

    kind: str  # how the provider calls it: "secret", "variable", "masked variable"
    name: str
    value: str  # what to put there


#: Where in each provider's web interface the settings are.
SETTINGS_PAGES: dict[Provider, str] = {
    Provider.GITHUB: "Settings > Secrets and variables > Actions",
    Provider.GITLAB: "Settings > CI/CD > Variables",
}
_TOKEN = "the token `conveyor token create --user ci` prints"
_SERVER = "your Conveyor server's address, e.g. https://conveyor.example.com"
_PIP_SPEC = f"optional: what CI installs with pip (default: {DEFAULT_PIP_SPEC})"
SETTINGS: dict[Provider, tuple[Setting, ...]] = {
    Provider.GITHUB: (
        Setting("secret", "CONVEYOR_TOKEN", _TOKEN),
        Setting("variable", "CONVEYOR_SERVER", _SERVER),
        Setting("variable", "CONVEYOR_PIP_SPEC", _PIP_SPEC),
    ),
    Provider.GITLAB: (
        Setting("masked variable", "CONVEYOR_TOKEN", _TOKEN),
        Setting("variable", "CONVEYOR_SERVER", _SERVER),
        Setting("variable", "CONVEYOR_PIP_SPEC", _PIP_SPEC),
    ),
}

# Branch names that are safe to write unquoted into a filter, a rule and a shell: git's own
# rules, narrowed to the characters branch names use in practice.
_BRANCH = re.compile(r"(?![-/])(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/+@-]+(?<!\.lock)(?<![./])")
_APP_DIRECTORY = re.compile(r"[A-Za-z0-9._/+@ -]+")


@dataclass(frozen=True)
class Pipeline:
    """What a CI file needs to know about the app."""

    branches: tuple[tuple[str, str], ...]  # (git branch, environment) pairs, from conveyor.yml
    app_directory: str = "."  # the app's directory relative to the repository's root


def render(provider: Provider, pipeline: Pipeline) -> str:
    """The text of ``provider``'s CI file for ``pipeline``."""
    _check(pipeline)
    if provider is Provider.GITHUB:
        return github_workflow(pipeline)
    return gitlab_ci(pipeline)


def github_workflow(pipeline: Pipeline) -> str:
    """.github/workflows/conveyor.yml."""
    lines = [
        "# Conveyor CI/CD for GitHub Actions, written by `conveyor init` (docs/ci.md).",
        "# Pull requests: `conveyor ci` checks the app. A push to a branch below releases it:",
        *_mapping_comment(pipeline),
        "# Settings > Secrets and variables > Actions needs:",
        "#   secret CONVEYOR_TOKEN      a token of the user ci: `conveyor token create --user ci`",
        "#   variable CONVEYOR_SERVER   the Conveyor server's address (or a secret of that name)",
        f"#   variable CONVEYOR_PIP_SPEC optional: what pip installs (default: {DEFAULT_PIP_SPEC})",
        "name: conveyor",
        "",
        "on:",
        "  pull_request:",
        "  push:",
        "    branches:  # the same branches as ci.branches in conveyor.yml",
        *(f"      - {scalar(_github_filter(branch))}" for branch, _ in pipeline.branches),
        "",
        "permissions:",
        "  contents: read",
        "",
        "concurrency:  # one run per branch or pull request; a release is never cut short",
        "  group: ${{ github.workflow }}-${{ github.ref }}",
        "  cancel-in-progress: ${{ github.event_name == 'pull_request' }}",
        "",
        "jobs:",
        "  conveyor:",
        "    name: conveyor ci",
        "    runs-on: ubuntu-latest",
        "    timeout-minutes: 60",
        "    env:",
        "      CONVEYOR_PIP_SPEC: ${{ vars.CONVEYOR_PIP_SPEC || '" + DEFAULT_PIP_SPEC + "' }}",
        "      CONVEYOR_SERVER: ${{ vars.CONVEYOR_SERVER || secrets.CONVEYOR_SERVER }}",
        "      CONVEYOR_TOKEN: ${{ secrets.CONVEYOR_TOKEN }}",
    ]
    if pipeline.app_directory != ".":
        lines += [
            "    defaults:",
            "      run:",
            f"        working-directory: {scalar(pipeline.app_directory)}",
        ]
    lines += [
        "    steps:",
        f"      - uses: {CHECKOUT_ACTION}",
        "        with:",
        "          fetch-depth: 0  # the whole history: conveyor ci compares commits and trees",
        "          persist-credentials: false",
        f"      - uses: {SETUP_PYTHON_ACTION}",
        "        with:",
        f'          python-version: "{PYTHON_VERSION}"',
        "      - name: Install Conveyor",
        '        run: python -m pip install "$CONVEYOR_PIP_SPEC"',
        "      - name: conveyor ci",
        "        run: conveyor ci",
    ]
    return "\n".join(lines) + "\n"


def gitlab_ci(pipeline: Pipeline) -> str:
    """.gitlab-ci.yml."""
    merge_request = "'$CI_PIPELINE_SOURCE == \"merge_request_event\"'"
    branch_rules = [
        f"    - if: '$CI_COMMIT_BRANCH == \"{branch}\"'" for branch, _ in pipeline.branches
    ]
    script = ["  script:"]
    if pipeline.app_directory != ".":
        script.append(f"    - {scalar('cd ' + shlex.quote(pipeline.app_directory))}")
    script.append("    - conveyor ci")
    lines = [
        "# Conveyor CI/CD for GitLab, written by `conveyor init` (docs/ci.md).",
        "# Merge requests: `conveyor ci` checks the app. A push to a branch below releases it:",
        *_mapping_comment(pipeline),
        "# Settings > CI/CD > Variables needs:",
        "#   CONVEYOR_TOKEN     masked: a token of the user ci, `conveyor token create --user ci`",
        "#   CONVEYOR_SERVER    the Conveyor server's address",
        f"#   CONVEYOR_PIP_SPEC  optional: what pip installs (default: {DEFAULT_PIP_SPEC})",
        "stages:",
        "  - check",
        "  - release",
        "",
        "workflow:",
        "  rules:",
        f"    - if: {merge_request}",
        *branch_rules,
        "",
        "variables:",
        f"  CONVEYOR_PIP_SPEC: {scalar(DEFAULT_PIP_SPEC)}  # a CI/CD variable of this name wins",
        '  GIT_DEPTH: "0"  # the whole history: conveyor ci compares commits and trees',
        "",
        ".conveyor:",
        f"  image: {scalar(GITLAB_IMAGE)}",
        "  before_script:",
        '    - python -m pip install "$CONVEYOR_PIP_SPEC"',
        *script,
        "",
        "conveyor-check:",
        "  extends: .conveyor",
        "  stage: check",
        "  interruptible: true",
        "  rules:",
        f"    - if: {merge_request}",
        "",
        "conveyor-release:",
        "  extends: .conveyor",
        "  stage: release",
        "  resource_group: conveyor-$CI_COMMIT_REF_SLUG  # one release per branch at a time",
        "  rules:",
        *branch_rules,
    ]
    return "\n".join(lines) + "\n"


def pipeline_order(branches: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """(branch, environment) pairs in the order of the environments (test before prod),
    environments Conveyor does not define by default last."""
    position = {e.name: e.position for e in DEFAULT_ENVIRONMENTS}
    return tuple(sorted(branches, key=lambda pair: (position.get(pair[1], len(position)), pair)))


def ci_user_command(branches: tuple[tuple[str, str], ...]) -> str:
    """The command that adds the CI job's user with the roles its branches need: developer
    where a branch deploys (an environment taking direct deploys), deployer where it promotes
    (judged by the built-in environments' policies; developer for others)."""
    policies = {e.name: e.policy for e in DEFAULT_ENVIRONMENTS}
    roles = []
    for _, environment in pipeline_order(branches):
        policy = policies.get(environment)
        role = "deployer" if policy is not None and not policy.direct_deploys else "developer"
        roles.append(f"--role {environment}:{role}")
    return " ".join(["conveyor users add ci", *roles])


def _mapping_comment(pipeline: Pipeline) -> list[str]:
    return [f"#   {branch} -> {environment}" for branch, environment in pipeline.branches]


def _github_filter(branch: str) -> str:
    """A branch name as a GitHub filter pattern matching only itself."""
    return branch.replace("+", "\\+")  # + repeats the character before it in a filter


def _check(pipeline: Pipeline) -> None:
    if not pipeline.branches:
        raise InvalidInput("ci.branches in conveyor.yml is empty: map a branch to an environment")
    for branch, environment in pipeline.branches:
        if not _BRANCH.fullmatch(branch):
            raise InvalidInput(
                f"ci.branches in conveyor.yml: {branch!r} cannot be written into a CI file; "
                "use a branch name of letters, digits and . _ / + @ -"
            )
        if not re.fullmatch(r"[A-Za-z0-9._-]+", environment):
            raise InvalidInput(
                f"ci.branches in conveyor.yml: {environment!r} is not an environment name"
            )
    if not _APP_DIRECTORY.fullmatch(pipeline.app_directory) or ".." in pipeline.app_directory:
        raise InvalidInput(
            f"the app's directory {pipeline.app_directory!r} cannot be written into a CI file; "
            "use a path of letters, digits and . _ / + @ - and spaces"
        )
