"""The unprivileged user each app runs as in each environment, when the server runs as root:
allocated once, kept for good, so the app's files keep their owner across releases and
restarts, and no two apps (nor one app in two environments) share a user."""

from __future__ import annotations

from sqlalchemy import Connection, and_, func, insert, select

from conveyor.domain.apps import FIRST_APP_UID as FIRST_UID
from conveyor.storage import schema

_T = schema.app_users


def uid_of(connection: Connection, app: str, environment: str) -> int:
    """The app's user id in the environment, allocated on first use."""
    found = connection.execute(
        select(_T.c.uid).where(and_(_T.c.app == app, _T.c.environment == environment))
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    highest = connection.execute(select(func.max(_T.c.uid))).scalar_one_or_none()
    uid = FIRST_UID if highest is None else int(highest) + 1
    connection.execute(insert(_T).values(app=app, environment=environment, uid=uid))
    return uid
