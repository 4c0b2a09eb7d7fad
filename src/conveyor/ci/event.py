"""What the CI service says happened: a pull/merge request, or a push to a branch. Read from
GitHub Actions' and GitLab CI's own variables, or given by flags elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from conveyor.errors import InvalidInput


class EventKind(StrEnum):
    REVIEW = "review"  # a pull request (GitHub) or merge request (GitLab)
    PUSH = "push"


@dataclass(frozen=True)
class CiEvent:
    provider: str  # "github", "gitlab" or "flags"
    kind: EventKind
    branch: str  # pushed branch, or the request's source branch
    target: str | None = None  # a request's target branch
    commit: str | None = None
    request: str | None = None  # the request's number

    def describe(self) -> str:
        if self.kind is EventKind.PUSH:
            return f"push to {self.branch}" + (f" ({self.commit[:12]})" if self.commit else "")
        number = f" #{self.request}" if self.request else ""
        return f"request{number} from {self.branch} into {self.target or '?'}"


_REVIEW_EVENTS = ("pull_request", "pull_request_target")


def detect(
    environ: Mapping[str, str], *, event: str | None = None, branch: str | None = None
) -> CiEvent:
    """The event from flags when given, else from the provider's variables."""
    if event is not None:
        if branch is None:
            raise InvalidInput("--event needs --branch: say which branch was pushed or reviewed")
        kind = EventKind.PUSH if event == "push" else EventKind.REVIEW
        return CiEvent("flags", kind, branch)
    if environ.get("GITHUB_ACTIONS") == "true":
        return _github(environ)
    if environ.get("GITLAB_CI") == "true":
        return _gitlab(environ)
    raise InvalidInput(
        "not running in GitHub Actions or GitLab CI: say what happened with --event push "
        "--branch NAME, or --event review --branch NAME"
    )


def _github(environ: Mapping[str, str]) -> CiEvent:
    name = environ.get("GITHUB_EVENT_NAME", "")
    commit = environ.get("GITHUB_SHA")
    if name in _REVIEW_EVENTS:
        ref = environ.get("GITHUB_REF", "")  # refs/pull/<number>/merge
        number = ref.split("/")[2] if ref.startswith("refs/pull/") else None
        return CiEvent(
            "github",
            EventKind.REVIEW,
            environ.get("GITHUB_HEAD_REF", ""),
            environ.get("GITHUB_BASE_REF"),
            commit,
            number,
        )
    if name == "push":
        if environ.get("GITHUB_REF_TYPE", "branch") != "branch":
            raise InvalidInput(
                f"a push of tag {environ.get('GITHUB_REF_NAME')} feeds no environment"
            )
        return CiEvent(
            "github", EventKind.PUSH, _required(environ, "GITHUB_REF_NAME"), None, commit
        )
    raise InvalidInput(
        f"GitHub event {name or '(none)'} is not one Conveyor acts on: run it on pull_request "
        "and push"
    )


def _gitlab(environ: Mapping[str, str]) -> CiEvent:
    source = environ.get("CI_PIPELINE_SOURCE", "")
    commit = environ.get("CI_COMMIT_SHA")
    if source == "merge_request_event":
        return CiEvent(
            "gitlab",
            EventKind.REVIEW,
            environ.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", ""),
            environ.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
            commit,
            environ.get("CI_MERGE_REQUEST_IID"),
        )
    branch = environ.get("CI_COMMIT_BRANCH")
    if source in ("push", "web", "api", "trigger", "pipeline") and branch:
        return CiEvent("gitlab", EventKind.PUSH, branch, None, commit)
    raise InvalidInput(
        f"GitLab pipeline source {source or '(none)'} without a branch is not one Conveyor acts "
        "on: run it for merge requests and branch pushes"
    )


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if not value:
        raise InvalidInput(f"{name} is not set; is this really a GitHub Actions job?")
    return value
