"""Which environment a git branch feeds, and how: the one rule `conveyor ci` and the server's
git-driven mode share. A push to a branch mapped to an environment that takes direct deploys
deploys there; to one that only takes promotions, it promotes exactly the pushed tree's bundle
from the upstream environment (so Prod gets what Test verified, or nothing)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from conveyor.domain.environments import Policy
from conveyor.errors import InvalidInput


class Move(StrEnum):
    DEPLOY = "deploy"
    PROMOTE = "promote"
    NOTHING = "nothing"


@dataclass(frozen=True)
class BranchPlan:
    move: Move
    environment: str | None = None
    upstream: str | None = None  # where a promotion comes from
    why: str = ""


def plan_for_branch(
    branch: str, branches: Iterable[tuple[str, str]], policies: Mapping[str, Policy]
) -> BranchPlan:
    """What a push to ``branch`` does, given the app's ``ci.branches`` mapping and the server's
    environments (name -> policy)."""
    mapping = dict(branches)
    environment = mapping.get(branch)
    if environment is None:
        mapped = ", ".join(f"{b} -> {e}" for b, e in sorted(mapping.items())) or "none"
        return BranchPlan(
            Move.NOTHING,
            why=f"branch {branch} is not mapped to an environment (ci.branches: {mapped})",
        )
    policy = policies.get(environment)
    if policy is None:
        raise InvalidInput(
            f"ci.branches maps {branch} to {environment!r}, but the server has no such "
            f"environment (it has {', '.join(policies) or 'none'}); fix conveyor.yml"
        )
    if policy.direct_deploys:
        return BranchPlan(Move.DEPLOY, environment, why=f"{branch} deploys to {environment}")
    if policy.promotes_from is None:
        raise InvalidInput(
            f"{environment} takes neither direct deploys nor promotions; no branch can feed it"
        )
    return BranchPlan(
        Move.PROMOTE,
        environment,
        policy.promotes_from,
        why=f"{branch} promotes to {environment} what {policy.promotes_from} verified",
    )
