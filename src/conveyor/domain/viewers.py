"""Who may view an app (open its pages through the proxy) in an environment: everyone
(``public``), anyone signed in (``signed-in``), or named users and groups. This is about the
people using an app, not about the platform: roles (domain/access.py) say who may release it.

Stored and sent as JSON: ``"public"``, ``"signed-in"`` or a list of names."""

from __future__ import annotations

import json
from dataclasses import dataclass

from conveyor.domain.access import USER_NAME, User
from conveyor.errors import InvalidInput

PUBLIC = "public"
SIGNED_IN = "signed-in"


@dataclass(frozen=True)
class ViewerAccess:
    mode: str = PUBLIC  # public, signed-in, or members
    #: Users and groups who may view, for ``members``.
    members: tuple[str, ...] = ()

    def describe(self) -> str:
        return ", ".join(self.members) if self.mode == "members" else self.mode

    @property
    def needs_sign_in(self) -> bool:
        return self.mode != PUBLIC

    def allows(self, user: User | None) -> bool:
        """Whether ``user`` (None: an anonymous visitor) may view the app. Admins may view
        every app; a disabled user none that needs signing in."""
        if self.mode == PUBLIC:
            return True
        if user is None or user.disabled:
            return False
        if self.mode == SIGNED_IN or user.admin:
            return True
        return user.name in self.members or bool(user.groups & set(self.members))

    def to_json(self) -> str:
        return json.dumps(list(self.members) if self.mode == "members" else self.mode)


def parse_access(text: str) -> ViewerAccess:
    """``public``, ``signed-in``, or ``NAME[,NAME...]`` (users and groups)."""
    text = text.strip()
    if text in (PUBLIC, SIGNED_IN):
        return ViewerAccess(text)
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if not USER_NAME.fullmatch(n)]
    if not names or bad:
        raise InvalidInput(
            f"{text!r} is not a viewer access: give public, signed-in, or names of users and "
            "groups separated by commas (e.g. ana,sales-team)"
        )
    return ViewerAccess("members", names)


#: What an unreadable stored access means: nobody but admins (closed, never public).
NOBODY = ViewerAccess("members", ())


def access_from_json(text: str | None) -> ViewerAccess:
    try:
        value = json.loads(text) if text else PUBLIC
    except ValueError:
        return NOBODY
    if isinstance(value, list):
        return ViewerAccess("members", tuple(str(v) for v in value))
    return ViewerAccess(str(value)) if value in (PUBLIC, SIGNED_IN) else NOBODY
