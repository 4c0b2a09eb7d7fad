"""The promotion policy as a table: environment x action x bundle state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conveyor.domain.environments import DEFAULT_ENVIRONMENTS, Environment, Policy
from conveyor.domain.policy import Action, Approval, BundleFacts, authorize
from conveyor.errors import PolicyViolation

DEV, TEST, PROD = DEFAULT_ENVIRONMENTS
BUNDLE = "ab12cd34ef" + "0" * 54

STATES: dict[str, BundleFacts] = {
    "new": BundleFacts("hello", BUNDLE, deployers=frozenset({"ana"})),
    "verified in dev": BundleFacts(
        "hello",
        BUNDLE,
        frozenset({"ana"}),
        verified_in=frozenset({"dev"}),
        was_live_in=frozenset({"dev"}),
    ),
    "failed in test": BundleFacts(
        "hello",
        BUNDLE,
        frozenset({"ana"}),
        verified_in=frozenset({"dev"}),
        was_live_in=frozenset({"dev"}),
        not_verified_because={"test": "its tests check failed in release 17"},
    ),
    "verified in test": BundleFacts(
        "hello",
        BUNDLE,
        frozenset({"ana"}),
        verified_in=frozenset({"dev", "test"}),
        was_live_in=frozenset({"dev", "test"}),
    ),
    "live in prod before": BundleFacts(
        "hello",
        BUNDLE,
        frozenset({"ana"}),
        verified_in=frozenset({"dev", "test", "prod"}),
        was_live_in=frozenset({"dev", "test", "prod"}),
    ),
}

ALLOWED = {
    # (environment, action, state)
    ("dev", "deploy", "new"),
    ("dev", "deploy", "verified in dev"),
    ("dev", "deploy", "failed in test"),
    ("dev", "deploy", "verified in test"),
    ("dev", "deploy", "live in prod before"),
    ("test", "deploy", "new"),
    ("test", "deploy", "verified in dev"),
    ("test", "deploy", "failed in test"),
    ("test", "deploy", "verified in test"),
    ("test", "deploy", "live in prod before"),
    ("test", "promote", "verified in dev"),
    ("test", "promote", "failed in test"),
    ("test", "promote", "verified in test"),
    ("test", "promote", "live in prod before"),
    ("prod", "promote", "verified in test"),
    ("prod", "promote", "live in prod before"),
    ("dev", "rollback", "verified in dev"),
    ("dev", "rollback", "failed in test"),
    ("dev", "rollback", "verified in test"),
    ("dev", "rollback", "live in prod before"),
    ("test", "rollback", "verified in test"),
    ("test", "rollback", "live in prod before"),
    ("prod", "rollback", "live in prod before"),
}


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("action", [a.value for a in Action])
@pytest.mark.parametrize("environment", [e.name for e in DEFAULT_ENVIRONMENTS])
def test_policy_table(environment, action, state):
    target = next(e for e in DEFAULT_ENVIRONMENTS if e.name == environment)
    facts = STATES[state]
    if (environment, action, state) in ALLOWED:
        authorize(Action(action), target, facts)
    else:
        with pytest.raises(PolicyViolation) as caught:
            authorize(Action(action), target, facts)
        message = str(caught.value)
        # Every refusal says what to do next.
        assert "`conveyor " in message, message


def test_prod_refuses_direct_deploys_and_says_how_to_get_there():
    with pytest.raises(PolicyViolation) as caught:
        authorize(Action.DEPLOY, PROD, STATES["verified in test"])
    assert str(caught.value) == (
        "prod takes no direct deploys: it only takes bundles promoted from test. Deploy to test, "
        "let its checks pass there, then run `conveyor promote hello --to prod`."
    )


def test_promotion_of_a_bundle_whose_tests_failed_names_the_release():
    with pytest.raises(PolicyViolation) as caught:
        authorize(Action.PROMOTE, PROD, STATES["failed in test"])
    message = str(caught.value)
    assert "bundle ab12cd34ef of hello is not verified in test" in message
    assert "its tests check failed in release 17" in message
    assert "deploy a fixed bundle to test (`conveyor deploy --env test`), and run " in message
    assert "`conveyor promote hello --to prod` once its checks pass there" in message


def test_promotion_of_a_bundle_never_released_upstream():
    with pytest.raises(PolicyViolation, match="it was never released in test.*`conveyor deploy"):
        authorize(Action.PROMOTE, PROD, STATES["verified in dev"])


def with_approvals(count: int, not_deployer: bool = False) -> Environment:
    return replace(
        PROD,
        policy=Policy(
            direct_deploys=False,
            promotes_from="test",
            approvals=count,
            approver_not_deployer=not_deployer,
        ),
    )


APPROVERS = {"prod": frozenset({"ana", "bob", "carol", "dave"})}


def test_approvals_are_counted_per_person_for_the_environment():
    prod = with_approvals(2)
    facts = replace(
        STATES["verified in test"],
        approvals=(Approval(BUNDLE, "prod", "bob"), Approval(BUNDLE, "test", "carol")),
        approvers=APPROVERS,
    )
    with pytest.raises(PolicyViolation) as caught:
        authorize(Action.PROMOTE, prod, facts)
    assert "prod requires 2 approvals of bundle ab12cd34ef of hello" in str(caught.value)
    assert "it has 1 (by bob)" in str(caught.value)
    assert "`conveyor approve hello --env prod`" in str(caught.value)
    enough = replace(facts, approvals=(*facts.approvals, Approval(BUNDLE, "prod", "dave")))
    authorize(Action.PROMOTE, prod, enough)


def test_approvals_count_only_from_users_who_are_approvers_there_now():
    facts = replace(
        STATES["verified in test"],
        approvals=(Approval(BUNDLE, "prod", "bob"), Approval(BUNDLE, "prod", "mallory")),
        approvers=APPROVERS,
    )
    with pytest.raises(PolicyViolation) as caught:
        authorize(Action.PROMOTE, with_approvals(2), facts)
    assert "it has 1 (by bob)" in str(caught.value)
    assert "approvals by mallory, who is not an approver in prod now, do not count" in str(
        caught.value
    )
    # Nobody's approval counts in an environment with no approvers.
    with pytest.raises(PolicyViolation, match="it has 0"):
        authorize(Action.PROMOTE, with_approvals(1), replace(facts, approvers={}))


def test_approval_by_the_deployer_does_not_count_when_the_policy_says_so():
    facts = replace(
        STATES["verified in test"],
        approvals=(Approval(BUNDLE, "prod", "ana"),),
        approvers=APPROVERS,
    )
    authorize(Action.PROMOTE, with_approvals(1), facts)
    with pytest.raises(PolicyViolation, match="approvals by ana, who deployed it, do not count"):
        authorize(Action.PROMOTE, with_approvals(1, not_deployer=True), facts)
    by_someone_else = replace(facts, approvals=(*facts.approvals, Approval(BUNDLE, "prod", "bob")))
    authorize(Action.PROMOTE, with_approvals(1, not_deployer=True), by_someone_else)
