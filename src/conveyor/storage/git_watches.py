"""What git-driven mode last did for each watched branch of each repository, kept in the
metadata database so that a restarted server neither releases a commit again nor misses one."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from conveyor.storage import schema

_T = schema.git_watches


def save_watch(connection: Connection, watch: dict[str, Any]) -> None:
    """Insert or replace the row of ``watch['repository']``, ``watch['branch']``."""
    key = (_T.c.repository == watch["repository"]) & (_T.c.branch == watch["branch"])
    connection.execute(delete(_T).where(key))
    connection.execute(
        insert(_T).values(
            repository=watch["repository"],
            branch=watch["branch"],
            commit_id=watch.get("commit"),
            app=watch.get("app"),
            environment=watch.get("environment"),
            bundle=watch.get("bundle"),
            mapping=json.dumps([list(pair) for pair in watch.get("mapping", ())]),
            result=watch.get("result", ""),
            error=watch.get("error"),
            at=watch["at"],
        )
    )


def load_watches(connection: Connection) -> list[dict[str, Any]]:
    rows = connection.execute(select(_T).order_by(_T.c.repository, _T.c.branch)).mappings()
    return [
        {
            "repository": row["repository"],
            "branch": row["branch"],
            "commit": row["commit_id"],
            "app": row["app"],
            "environment": row["environment"],
            "bundle": row["bundle"],
            "mapping": tuple((str(b), str(e)) for b, e in json.loads(row["mapping"] or "[]")),
            "result": row["result"],
            "error": row["error"],
            "at": row["at"],
        }
        for row in rows
    ]
