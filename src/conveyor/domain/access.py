"""Who may do what: users, their roles per environment, and the permissions roles give.

Roles are data. A user holds roles in environments (``bob`` is ``deployer`` in ``test`` and
``approver`` in ``prod``) or is an admin; each role gives a fixed set of permissions, listed in
``ROLE_PERMISSIONS`` (and in docs/security.md). Every API route needs one permission; the API
checks it with ``User.can`` before it reads the request body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.errors import InvalidInput


class Role(StrEnum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    DEPLOYER = "deployer"
    APPROVER = "approver"


class Permission(StrEnum):
    """What a request needs. The first six hold in one environment; the rest server-wide."""

    VIEW = "view"
    DEPLOY = "deploy"
    SET_VARIABLES = "set-variables"
    PROMOTE = "promote"
    ROLL_BACK = "roll-back"
    APPROVE = "approve"
    #: Say who may view an app there (public, signed-in, named users and groups).
    SET_ACCESS = "set-access"
    #: Run a report or job now, set or unset its schedule and who is emailed about its runs.
    RUN = "run"
    #: Upload a bundle: a developer somewhere (uploads are what developers deploy).
    UPLOAD = "upload"
    #: Any active user, whatever their roles.
    SIGNED_IN = "signed-in"
    #: The user named in the request, or an admin (their own tokens, for instance).
    SELF_OR_ADMIN = "self-or-admin"
    ADMIN = "admin"
    #: No token needed.
    PUBLIC = "public"

    @property
    def per_environment(self) -> bool:
        return self in _PER_ENVIRONMENT


_PER_ENVIRONMENT = frozenset(
    {
        Permission.VIEW,
        Permission.DEPLOY,
        Permission.SET_VARIABLES,
        Permission.PROMOTE,
        Permission.ROLL_BACK,
        Permission.APPROVE,
        Permission.SET_ACCESS,
        Permission.RUN,
    }
)

#: The permissions each role gives in the environment where it is held. Every role sees its
#: environment: nobody promotes into or approves for what they cannot look at.
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.DEVELOPER: frozenset(
        {
            Permission.VIEW,
            Permission.DEPLOY,
            Permission.SET_VARIABLES,
            Permission.SET_ACCESS,
            Permission.RUN,
        }
    ),
    Role.DEPLOYER: frozenset(
        {
            Permission.VIEW,
            Permission.PROMOTE,
            Permission.ROLL_BACK,
            Permission.SET_VARIABLES,
            Permission.SET_ACCESS,
            Permission.RUN,
        }
    ),
    Role.APPROVER: frozenset({Permission.VIEW, Permission.APPROVE}),
}

#: How a refusal names what was asked, e.g. "promote into prod".
_DOING = {
    Permission.VIEW: "see {}",
    Permission.DEPLOY: "deploy to {}",
    Permission.SET_VARIABLES: "set variables in {}",
    Permission.PROMOTE: "promote into {}",
    Permission.ROLL_BACK: "roll back in {}",
    Permission.APPROVE: "approve bundles for {}",
    Permission.RUN: "run reports and jobs or set their schedules and email in {}",
    Permission.SET_ACCESS: "say who may view apps in {}",
}

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: Names the server itself acts under in the audit log: no user may be called so.
SERVER_ACTORS = frozenset({"server", "upgrade", "schedule"})


@dataclass(frozen=True, order=True)
class Grant:
    """A role held in one environment: ``prod:approver``."""

    environment: str
    role: Role

    def __str__(self) -> str:
        return f"{self.environment}:{self.role}"


def parse_grant(text: str) -> Grant:
    """``ENV:ROLE`` (``prod:approver``) as a Grant; InvalidInput naming the roles otherwise."""
    environment, colon, role = text.strip().partition(":")
    roles = ", ".join(r.value for r in Role)
    if not colon or not environment or role not in {r.value for r in Role}:
        raise InvalidInput(
            f"{text!r} is not a role in an environment: write ENV:ROLE, e.g. prod:approver "
            f"(roles: {roles})"
        )
    return Grant(environment, Role(role))


def check_user_name(name: str) -> None:
    if not USER_NAME.fullmatch(name):
        raise InvalidInput(
            f"{name!r} is not a valid user name: up to 64 letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    if name in SERVER_ACTORS:
        raise InvalidInput(
            f"{name!r} is the name the server itself acts under in the audit log; choose another"
        )


@dataclass(frozen=True)
class User:
    """A person (or a CI job) as the server knows them."""

    name: str
    admin: bool = False
    disabled: bool = False
    grants: frozenset[Grant] = field(default_factory=frozenset)
    #: Groups the user belongs to (viewer access may name them).
    groups: frozenset[str] = field(default_factory=frozenset)
    #: Whether the user can sign in to the console with a password.
    has_password: bool = False

    def roles_in(self, environment: str) -> frozenset[Role]:
        return frozenset(g.role for g in self.grants if g.environment == environment)

    def can(self, permission: Permission, environment: str | None = None) -> bool:
        """Whether this user may do ``permission`` (in ``environment`` when it is one that
        holds per environment). SELF_OR_ADMIN is decided by the caller, who knows the subject."""
        if permission is Permission.PUBLIC:
            return True
        if self.disabled:
            return False
        if self.admin or permission is Permission.SIGNED_IN:
            return True
        if permission is Permission.UPLOAD:
            return any(Permission.DEPLOY in ROLE_PERMISSIONS[g.role] for g in self.grants)
        if permission.per_environment and environment is not None:
            return any(permission in ROLE_PERMISSIONS[r] for r in self.roles_in(environment))
        return False

    def environments_with(self, permission: Permission, environments: Iterable[str]) -> list[str]:
        """Those of ``environments`` where this user may do ``permission``."""
        return [e for e in environments if self.can(permission, e)]


def roles_giving(permission: Permission) -> list[Role]:
    return [role for role, given in ROLE_PERMISSIONS.items() if permission in given]


def refusal(user: User, permission: Permission, environment: str | None = None) -> str:
    """One sentence: who may not do what, which role it needs, and how to get it."""
    if permission.per_environment and environment is not None:
        doing = _DOING[permission].format(environment)
        giving = roles_giving(permission)
        needed = "a role" if permission is Permission.VIEW else f"the {' or '.join(giving)} role"
        held = sorted(r.value for r in user.roles_in(environment))
        has = f"has {', '.join(held)} there" if held else "has no role there"
        return (
            f"{user.name} may not {doing}: that needs {needed} in {environment} "
            f"({user.name} {has}); an admin can grant it with "
            f"`conveyor users grant {user.name} {environment}:{giving[0]}`"
        )
    if permission is Permission.UPLOAD:
        return (
            f"{user.name} may not upload bundles: that needs the developer role in some "
            f"environment; an admin can grant it with `conveyor users grant {user.name} "
            "dev:developer`"
        )
    if permission is Permission.SELF_OR_ADMIN:
        return f"{user.name} may only do this for themselves: for another user it needs an admin"
    return f"{user.name} may not do this: it needs an admin"
