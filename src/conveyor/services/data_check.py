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
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from conveyor.domain.environments import DataConnection, Environment
from conveyor.errors import ConveyorError, PolicyViolation
from conveyor.runtime.app_data import fill_references
from conveyor.services.context import Services
from conveyor.storage import catalog

_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"

_REACHABLE = """
WITH RECURSIVE reachable(oid) AS (
    SELECT oid FROM pg_roles WHERE rolname = current_user
    UNION
    SELECT m.roleid FROM pg_auth_members m JOIN reachable r ON m.member = r.oid
)
SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE oid IN (SELECT oid FROM reachable)
ORDER BY rolname = current_user DESC, rolname
"""

_WRITABLE_TABLES = f"""
SELECT n.nspname, c.relname, p.privilege
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN (VALUES ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE')) AS p(privilege)
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg_toast%'
  AND has_table_privilege(:role, c.oid, p.privilege)
ORDER BY 1, 2, 3
"""

_CREATABLE_SCHEMAS = f"""
SELECT nspname FROM pg_namespace
WHERE nspname NOT IN {_SYSTEM_SCHEMAS} AND nspname NOT LIKE 'pg\\_%'
  AND has_schema_privilege(:role, oid, 'CREATE')
ORDER BY 1
"""


@dataclass(frozen=True)
class Unsafe:
    """One privilege that lets the login write, and the SQL that removes it."""

    privilege: str
    fix: str


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


@dataclass
class _Verdicts:
    """What the server found, per (environment, connection, url), for this process."""

    found: dict[tuple[str, str, str], ConnectionCheck] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_VERDICTS = _Verdicts()


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
                results.append(check_connection(environment, data))
    return results


def check_connection(
    environment: Environment,
    data: DataConnection,
    server_environ: dict[str, str] | None = None,
) -> ConnectionCheck:
    """Connect as the connection's login and ask the database what it may change."""
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
        return made(
            "safe",
            note="SQLite: the file is opened read-only, and mounted read-only in the sandbox",
        )
    if backend != "postgresql":
        return made("not checked", note=f"{backend}: Conveyor checks PostgreSQL logins only")
    engine = create_engine(url.set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            login = str(connection.execute(text("SELECT current_user")).scalar_one())
            problems = _problems(connection, login)
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


def _problems(connection: Connection, login: str) -> list[Unsafe]:
    """Each way the login could write: as itself (its own grants, or PUBLIC's) or through a
    role it can use, that role named with the REVOKE of the membership."""
    run = connection.execute
    roles = run(text(_REACHABLE)).all()
    tables: dict[str, dict[tuple[str, str], list[str]]] = {}
    schemas: dict[str, list[str]] = {}
    for role, _, _ in roles:
        found: dict[tuple[str, str], list[str]] = {}
        for schema, table, privilege in run(text(_WRITABLE_TABLES), {"role": role}).all():
            found.setdefault((schema, table), []).append(privilege)
        tables[role] = found
        schemas[role] = [s for (s,) in run(text(_CREATABLE_SCHEMAS), {"role": role}).all()]
    # What the login holds only because a role it inherits holds it is that role's to fix.
    inherited = {
        (key, privilege)
        for role, found in tables.items()
        if role != login
        for key, privileges in found.items()
        for privilege in privileges
    }
    problems: list[Unsafe] = []
    quoted_login = _quote(login)
    for role, superuser, bypassrls in roles:
        own = role == login
        via = "" if own else f" (through role {role}, which {login} can use)"
        membership = f"REVOKE {_quote(role)} FROM {quoted_login};"
        if superuser:
            fix = f"ALTER ROLE {_quote(role)} NOSUPERUSER;" if own else membership
            problems.append(Unsafe(f"superuser{via}", fix))
            continue  # every privilege follows from it; this is the fix to make
        if bypassrls:
            fix = f"ALTER ROLE {_quote(role)} NOBYPASSRLS;" if own else membership
            problems.append(Unsafe(f"BYPASSRLS{via}", fix))
        for (schema, table), privileges in tables[role].items():
            if own:
                privileges = [p for p in privileges if ((schema, table), p) not in inherited]
            if not privileges:
                continue
            target = f"{_quote(schema)}.{_quote(table)}"
            fix = (
                f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {target} FROM {quoted_login}, PUBLIC;"
                if own
                else membership
            )
            problems.append(Unsafe(f"{', '.join(privileges)} on {schema}.{table}{via}", fix))
        others = {s for r, found in schemas.items() if r != login for s in found}
        for schema in schemas[role]:
            if own and schema in others:
                continue
            fix = (
                f"REVOKE CREATE ON SCHEMA {_quote(schema)} FROM {quoted_login}, PUBLIC;"
                if own
                else membership
            )
            problems.append(Unsafe(f"CREATE on schema {schema}{via}", fix))
    return problems


def require_safe(environment: Environment, log: Callable[[str], None]) -> None:
    """Before a release of ``environment`` uses its read-only connections: each must have
    been proven safe in this server process (checked now if not), unless the environments file
    marks it ``verified: false``. PolicyViolation naming the unsafe privileges otherwise."""
    for data in environment.data:
        if not data.read_only:
            continue
        if not data.verified:
            log(
                f"data connection {data.name!r} is used without proof that its login cannot "
                "write (the environments file says `verified: false`)"
            )
            continue
        key = (environment.name, data.name, data.url)
        with _VERDICTS.lock:
            known = _VERDICTS.found.get(key)
        if known is None or not known.safe:
            known = check_connection(environment, data)
            with _VERDICTS.lock:
                _VERDICTS.found[key] = known
        if known.verdict in ("safe", "not checked"):
            continue
        if known.verdict == "error":
            raise PolicyViolation(
                f"data connection {data.name!r} of {environment.name} could not be checked "
                f"({known.note}); a read-only connection is used only once its login is shown "
                "not to write. Fix it, or mark it `verified: false` in the environments file"
            )
        unsafe = "; ".join(f"{p.privilege} (fix: {p.fix})" for p in known.problems)
        raise PolicyViolation(
            f"data connection {data.name!r} of {environment.name} is read-only, but its login "
            f"{known.login} can write: {unsafe}. Run the fixes as the database's owner, then "
            "release again (`conveyor data check` shows this too)"
        )


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
