"""The promotion policy: which bundle may go into which environment, and why not.

Every refusal is a PolicyViolation that states the rule and what would satisfy it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.domain.environments import Environment
from conveyor.errors import PolicyViolation


class Action(StrEnum):
    DEPLOY = "deploy"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


def bundle_alias(bundle_id: str) -> str:
    """The short name people use for a bundle: the first 10 hex digits of its id."""
    return bundle_id[:10]


@dataclass(frozen=True)
class Approval:
    bundle_id: str
    environment: str
    by: str
    comment: str = ""


@dataclass(frozen=True)
class BundleFacts:
    """What the store knows about one bundle, as the policy needs it."""

    app: str
    bundle_id: str
    #: Who uploaded the bundle, released it anywhere, or is releasing it now: with
    #: ``approver_not_deployer`` their approvals do not count.
    deployers: frozenset[str] = frozenset()
    #: Environments where the bundle is verified (all required checks passed there).
    verified_in: frozenset[str] = frozenset()
    #: Why the bundle is not verified in an environment, e.g. "its tests failed in release 17".
    not_verified_because: dict[str, str] = field(default_factory=dict)
    #: Approvals of this bundle, any environment.
    approvals: tuple[Approval, ...] = ()
    #: Environments where this bundle was live at some point.
    was_live_in: frozenset[str] = frozenset()
    #: Per environment, the users whose approvals count there (approvers and admins who are
    #: active now); an environment left out counts nobody's.
    approvers: Mapping[str, frozenset[str]] = field(default_factory=dict)


def authorize(action: Action, target: Environment, facts: BundleFacts) -> None:
    """Raise PolicyViolation unless ``action`` may release ``facts.bundle_id`` into ``target``."""
    alias = bundle_alias(facts.bundle_id)
    policy = target.policy
    if action is Action.DEPLOY:
        if not policy.direct_deploys:
            upstream = policy.promotes_from
            how = (
                f"Deploy to {upstream}, let its checks pass there, then run "
                f"`conveyor promote {facts.app} --to {target.name}`."
                if upstream
                else f"Change the policy of {target.name} to allow direct deploys."
            )
            raise PolicyViolation(
                f"{target.name} takes no direct deploys"
                + (f": it only takes bundles promoted from {upstream}. " if upstream else ". ")
                + how
            )
    elif action is Action.PROMOTE:
        upstream = policy.promotes_from
        if upstream is None:
            raise no_promotions(target)
        if upstream not in facts.verified_in:
            because = facts.not_verified_because.get(
                upstream, f"it was never released in {upstream}"
            )
            raise PolicyViolation(
                f"bundle {alias} of {facts.app} is not verified in {upstream}: {because}. "
                f"{target.name} only takes bundles whose checks passed in {upstream}; "
                f"{_next_step(facts, upstream, target.name)}"
            )
    elif action is Action.ROLLBACK:
        if target.name not in facts.was_live_in:
            raise PolicyViolation(
                f"bundle {alias} of {facts.app} was never live in {target.name}; a rollback can "
                f"only go back to a bundle that was live there before (see `conveyor history "
                f"{facts.app} --env {target.name}`)."
            )
        return  # a bundle that was live here already passed this environment's gates
    _require_approvals(target, facts)


def no_promotions(target: Environment) -> PolicyViolation:
    return PolicyViolation(
        f"{target.name} takes no promotions (it has no upstream environment); deploy to it "
        f"directly with `conveyor deploy --env {target.name}`."
    )


def _next_step(facts: BundleFacts, upstream: str, target: str) -> str:
    promote = f"`conveyor promote {facts.app} --to {target}`"
    if facts.not_verified_because.get(upstream, "").startswith("its checks are still running"):
        return f"wait for them to finish, then run {promote} again."
    return (
        f"deploy a fixed bundle to {upstream} (`conveyor deploy --env {upstream}`), and run "
        f"{promote} once its checks pass there."
        if upstream in facts.not_verified_because
        else f"release it to {upstream} first (`conveyor deploy --env {upstream}` or "
        f"`conveyor promote {facts.app} --to {upstream}`)."
    )


def _require_approvals(target: Environment, facts: BundleFacts) -> None:
    policy = target.policy
    if policy.approvals <= 0:
        return
    relevant = [a for a in facts.approvals if a.environment == target.name]
    approvers = facts.approvers.get(target.name, frozenset())
    not_approvers = sorted({a.by for a in relevant if a.by not in approvers})
    deployers = sorted(
        {a.by for a in relevant if policy.approver_not_deployer and a.by in facts.deployers}
        - set(not_approvers)
    )
    counted = sorted({a.by for a in relevant} - set(not_approvers) - set(deployers))
    if len(counted) >= policy.approvals:
        return
    alias = bundle_alias(facts.bundle_id)
    have = f"{len(counted)}" + (f" (by {', '.join(counted)})" if counted else "")
    notes = []
    if not_approvers:
        notes.append(
            f"approvals by {', '.join(not_approvers)}, who {_are(not_approvers)} not an "
            f"approver in {target.name} now, do not count"
        )
    if deployers:
        notes.append(
            f"approvals by {', '.join(deployers)}, who deployed it, do not count "
            f"({target.name} asks for approvals from someone else)"
        )
    note = "".join(f"; {n}" for n in notes)
    raise PolicyViolation(
        f"{target.name} requires {policy.approvals} approval{_s(policy.approvals)} of bundle "
        f"{alias} of {facts.app}, from different approvers; it has {have}{note}. Ask an "
        f"approver of {target.name} to run `conveyor approve {facts.app} --env {target.name}`."
    )


def _are(names: list[str]) -> str:
    return "is" if len(names) == 1 else "are"


def _s(count: int) -> str:
    return "" if count == 1 else "s"
