"""`conveyor data check`: proving that a read-only data connection's login cannot write.

conveyor.data opens read-only connections with read-only transactions, but an app holds the
URL and can open its own connection: only the database can refuse its writes. So for every
read-only PostgreSQL connection, Conveyor connects with the connection's own login and asks
the database what that login may do, directly, through roles it inherits, and through roles it
may ``SET ROLE`` to:

- no superuser and no ``BYPASSRLS`` anywhere among them;
- no INSERT, UPDATE, DELETE or TRUNCATE on any table or view it can see (predefined roles such
  as ``pg_write_all_data`` included: the database's own privilege checks answer);
- no CREATE on any schema.

A connection that fails is named with each privilege that makes it unsafe and the SQL that
removes it. The server runs the same check before the first release of an environment uses a
connection (``require_safe``), once per connection and server process; a connection the
environments file marks ``verified: false`` is used without it, and status says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from conveyor.domain.environments import DataConnection, Environment
from conveyor.errors import ConveyorError, PolicyViolation
from conveyor.runtime.app_data import fill_references
from conveyor.services import pg_privileges
from conveyor.services.context import Services
from conveyor.services.pg_privileges import Unsafe
from conveyor.storage import catalog


@dataclass(frozen=True)
class ConnectionCheck:
    environment: str
    connection: str
    #: "safe", "unsafe", "not checked" (with why in ``note``) or "error".
    verdict: str
    login: str | None = None
    problems: tuple[Unsafe, ...] = ()
    note: str = ""

    @property
    def safe(self) -> bool:
        return self.verdict == "safe"


def check(services: Services, environments: Iterable[str] | None = None) -> list[ConnectionCheck]:
    """Check every read-only data connection of ``environments`` (default: all)."""
    with services.store.transaction() as connection:
        found = catalog.list_environments(connection)
    wanted = set(environments) if environments is not None else None
    results = []
    for environment in found:
        if wanted is not None and environment.name not in wanted:
            continue
        for data in environment.data:
            if data.read_only:
                results.append(check_connection(environment, data, sandboxed=sandboxed(services)))
    return results


def check_connection(
    environment: Environment,
    data: DataConnection,
    server_environ: dict[str, str] | None = None,
    *,
    sandboxed: bool = True,
) -> ConnectionCheck:
    """Connect as the connection's login and ask the database what it may change. A SQLite
    file is safe only where the sandbox mounts it read-only (``sandboxed``)."""
    made = _made(environment.name, data.name)
    try:
        url = make_url(
            fill_references(
                data.url,
                os.environ if server_environ is None else server_environ,
                f"environment {environment.name}'s data connection {data.name!r}",
            )
        )
    except ArgumentError:
        return made("error", note="its url is not a database URL")
    except ConveyorError as exc:
        return made("error", note=str(exc))
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not sandboxed:
            return made(
                "unsafe",
                note="SQLite without a sandbox: conveyor.data opens the file read-only, but "
                "the app can open it itself and write; install bubblewrap",
            )
        return made("safe", note="SQLite: mounted read-only in the sandbox")
    if backend != "postgresql":
        return made("not checked", note=f"{backend}: Conveyor checks PostgreSQL logins only")
    engine = create_engine(url.set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            login = str(connection.execute(text("SELECT current_user")).scalar_one())
            problems = pg_privileges.problems(connection, login)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return made("error", note=f"could not connect as its login: {reason}")
    finally:
        engine.dispose()
    return made("unsafe" if problems else "safe", login=login, problems=tuple(problems))


def _made(environment: str, connection: str) -> Callable[..., ConnectionCheck]:
    def made(
        verdict: str,
        *,
        login: str | None = None,
        problems: tuple[Unsafe, ...] = (),
        note: str = "",
    ) -> ConnectionCheck:
        return ConnectionCheck(environment, connection, verdict, login, problems, note)

    return made


def require_safe(
    environment: Environment, log: Callable[[str], None], *, sandboxed: bool = True
) -> None:
    """Before a release of ``environment`` uses its read-only connections: each is proven
    safe again now (grants change), unless the environments file marks it
    ``verified: false``. PolicyViolation naming the unsafe privileges otherwise."""
    for data in environment.data:
        if not data.read_only:
            continue
        if not data.verified:
            log(
                f"data connection {data.name!r} is used without proof that its login cannot "
                "write (the environments file says `verified: false`)"
            )
            continue
        known = check_connection(environment, data, sandboxed=sandboxed)
        if known.verdict in ("safe", "not checked"):
            continue
        if known.verdict == "error":
            raise PolicyViolation(
                f"data connection {data.name!r} of {environment.name} could not be checked "
                f"({known.note}); a read-only connection is used only once its login is shown "
                "not to write. Fix it, or mark it `verified: false` in the environments file"
            )
        unsafe = "; ".join(f"{p.privilege} (fix: {p.fix})" for p in known.problems) or known.note
        raise PolicyViolation(
            f"data connection {data.name!r} of {environment.name} is read-only, but its login "
            f"{known.login} can write: {unsafe}. Run the fixes as the database's owner, then "
            "release again (`conveyor data check` shows this too)"
        )


def sandboxed(services: Services) -> bool:
    """Whether the runtime runs apps in the sandbox (read-only SQLite files are safe)."""
    return not services.runtime.isolation().startswith("none")
