"""Reading what happened from the variables GitHub Actions and GitLab CI set."""

from __future__ import annotations

import pytest

from conveyor.ci.event import CiEvent, EventKind, detect
from conveyor.errors import InvalidInput


def test_github_push_and_pull_request():
    push = detect(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_REF_NAME": "test",
            "GITHUB_REF_TYPE": "branch",
            "GITHUB_SHA": "a" * 40,
        }
    )
    assert push == CiEvent("github", EventKind.PUSH, "test", None, "a" * 40)
    request = detect(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_REF": "refs/pull/12/merge",
            "GITHUB_HEAD_REF": "feature",
            "GITHUB_BASE_REF": "test",
        }
    )
    assert (request.kind, request.branch, request.target, request.request) == (
        EventKind.REVIEW,
        "feature",
        "test",
        "12",
    )
    assert request.describe() == "request #12 from feature into test"


def test_gitlab_push_and_merge_request():
    push = detect({"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"})
    assert (push.provider, push.kind, push.branch) == ("gitlab", EventKind.PUSH, "main")
    request = detect(
        {
            "GITLAB_CI": "true",
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_MERGE_REQUEST_IID": "4",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "fix",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "test",
        }
    )
    assert (request.kind, request.branch, request.target) == (EventKind.REVIEW, "fix", "test")


def test_flags_elsewhere_and_clear_refusals():
    assert detect({}, event="push", branch="main").kind is EventKind.PUSH
    assert detect({}, event="review", branch="x").kind is EventKind.REVIEW
    with pytest.raises(InvalidInput, match="--event push --branch NAME"):
        detect({})
    with pytest.raises(InvalidInput, match="--event needs --branch"):
        detect({}, event="push")
    with pytest.raises(InvalidInput, match="a push of tag v1 feeds no environment"):
        detect(
            {
                "GITHUB_ACTIONS": "true",
                "GITHUB_EVENT_NAME": "push",
                "GITHUB_REF_TYPE": "tag",
                "GITHUB_REF_NAME": "v1",
            }
        )
    with pytest.raises(InvalidInput, match="schedule is not one Conveyor acts on"):
        detect({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "schedule"})
    with pytest.raises(InvalidInput, match="pipeline source schedule"):
        detect({"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "schedule"})
