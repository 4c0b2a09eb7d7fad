"""Which environment a branch feeds, and how."""

from __future__ import annotations

import pytest

from conveyor.domain.branches import Move, plan_for_branch
from conveyor.domain.environments import DEFAULT_ENVIRONMENTS, Policy
from conveyor.errors import InvalidInput

POLICIES = {e.name: e.policy for e in DEFAULT_ENVIRONMENTS}
BRANCHES = (("main", "prod"), ("test", "test"))


@pytest.mark.parametrize(
    ("branch", "move", "environment", "upstream"),
    [
        ("test", Move.DEPLOY, "test", None),
        ("main", Move.PROMOTE, "prod", "test"),
        ("feature/x", Move.NOTHING, None, None),
    ],
)
def test_default_mapping(branch, move, environment, upstream):
    plan = plan_for_branch(branch, BRANCHES, POLICIES)
    assert (plan.move, plan.environment, plan.upstream) == (move, environment, upstream)


def test_a_mapping_to_an_unknown_or_unfed_environment_is_an_error():
    with pytest.raises(InvalidInput, match="no such environment"):
        plan_for_branch("main", (("main", "production"),), POLICIES)
    closed = {"prod": Policy(direct_deploys=False, promotes_from=None)}
    with pytest.raises(InvalidInput, match="neither direct deploys nor promotions"):
        plan_for_branch("main", BRANCHES, closed)
