"""Environments: ordered stages (dev, test, prod by default), each with its own policy."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Policy:
    """What an environment accepts.

    ``direct_deploys``: a freshly built bundle may be deployed straight into it.
    ``promotes_from``: the upstream environment whose verified bundles it takes (None: none).
    ``approvals``: sign-offs a bundle needs here before it may be released.
    ``approver_not_deployer``: approvals by the person who deployed the bundle do not count.
    """

    direct_deploys: bool = True
    promotes_from: str | None = None
    approvals: int = 0
    approver_not_deployer: bool = False


@dataclass(frozen=True)
class Environment:
    name: str
    position: int
    port: int
    #: The value apps get in CONVEYOR_ENV and R_CONFIG_ACTIVE (their config.yml section).
    config_name: str = ""
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        if not self.config_name:
            object.__setattr__(self, "config_name", self.name)


DEFAULT_ENVIRONMENTS: tuple[Environment, ...] = (
    Environment("dev", 0, 8701, policy=Policy(direct_deploys=True)),
    Environment("test", 1, 8702, policy=Policy(direct_deploys=True, promotes_from="dev")),
    Environment("prod", 2, 8703, policy=Policy(direct_deploys=False, promotes_from="test")),
)


def next_environment(
    environments: tuple[Environment, ...] | list[Environment], name: str
) -> Environment | None:
    """The environment that promotes from ``name`` (the default target of `promote`)."""
    for environment in sorted(environments, key=lambda e: e.position):
        if environment.policy.promotes_from == name:
            return environment
    return None
