"""Versioned schema migrations. Each migration runs once, in its own transaction, and is
recorded in `schema_migrations`; `migrate` brings any database up to the newest version."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, inspect, select, text, update

from conveyor.domain.access import SERVER_ACTORS, USER_NAME
from conveyor.domain.environments import default_roles_for
from conveyor.errors import StorageError
from conveyor.storage import schema


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial(connection: Connection) -> None:
    schema.metadata.create_all(connection)
    connection.execute(insert(schema.audit_head).values(id=1, seq=0, hash="0" * 64))


def _release_steps(connection: Connection) -> None:
    # Databases created by version 1 of this code lack the column; newer ones have it already,
    # because migration 1 creates the tables as schema.py draws them.
    columns = {column["name"] for column in inspect(connection).get_columns("releases")}
    if "steps" not in columns:
        connection.execute(text("ALTER TABLE releases ADD COLUMN steps TEXT NOT NULL DEFAULT '[]'"))


def _variables_and_tokens(connection: Connection) -> None:
    # create_all skips tables that exist: databases created by this version already have them.
    schema.metadata.create_all(connection, tables=[schema.variables, schema.api_tokens])


def _environments_as_code(connection: Connection) -> None:
    columns = {column["name"] for column in inspect(connection).get_columns("environments")}
    for name, definition in (
        ("data", "TEXT NOT NULL DEFAULT '[]'"),
        ("outputs", "TEXT"),
        ("variables", "TEXT NOT NULL DEFAULT '[]'"),
        ("secrets", "TEXT NOT NULL DEFAULT '[]'"),
    ):
        if name not in columns:
            connection.execute(text(f"ALTER TABLE environments ADD COLUMN {name} {definition}"))
    schema.metadata.create_all(connection, tables=[schema.settings])


def _users_and_roles(connection: Connection) -> None:
    """Users with roles per environment; tokens that expire and can be revoked. The owners of
    existing tokens become users: the first token's owner an admin, the others with each
    environment's default roles."""
    columns = {column["name"] for column in inspect(connection).get_columns("api_tokens")}
    for name, definition in (
        ("created_by", "VARCHAR(64) NOT NULL DEFAULT ''"),
        ("expires_at", "VARCHAR(32)"),
        ("last_used_at", "VARCHAR(32)"),
        ("revoked_at", "VARCHAR(32)"),
        ("mac", "VARCHAR(64)"),
    ):
        if name not in columns:
            connection.execute(text(f"ALTER TABLE api_tokens ADD COLUMN {name} {definition}"))
    environment_columns = {c["name"] for c in inspect(connection).get_columns("environments")}
    if "default_roles" not in environment_columns:
        connection.execute(
            text("ALTER TABLE environments ADD COLUMN default_roles TEXT NOT NULL DEFAULT '[]'")
        )
    _fill_default_roles(connection)
    schema.metadata.create_all(connection, tables=[schema.users, schema.grants])
    _users_from_tokens(connection)


def _fill_default_roles(connection: Connection) -> None:
    table = schema.environments
    for name, roles in connection.execute(select(table.c.name, table.c.default_roles)).all():
        if roles in (None, "", "[]"):
            connection.execute(
                update(table)
                .where(table.c.name == name)
                .values(default_roles=json.dumps(list(default_roles_for(name))))
            )


def _users_from_tokens(connection: Connection) -> None:
    """Before this version anyone with a token could mint tokens for any name, so a name
    proves nothing: token owners become users with each environment's default roles only (an
    admin grants the rest), and names that are not valid user names become no user at all
    (their tokens stop working)."""
    tokens, users, grants = schema.api_tokens, schema.users, schema.grants
    owners = connection.execute(select(tokens.c.owner).order_by(tokens.c.id)).scalars().all()
    known = set(connection.execute(select(users.c.name)).scalars())
    stamp = datetime.now(UTC).isoformat(timespec="microseconds")
    environments = connection.execute(
        select(schema.environments.c.name, schema.environments.c.default_roles)
    ).all()
    admin_made = bool(known)
    for owner in dict.fromkeys(owners):
        if owner in known or not USER_NAME.fullmatch(owner) or owner in SERVER_ACTORS:
            continue
        connection.execute(
            insert(users).values(
                name=owner,
                admin=not admin_made,
                disabled=False,
                created_by="upgrade",
                created_at=stamp,
            )
        )
        if admin_made:
            for environment, roles in environments:
                for role in json.loads(roles or "[]"):
                    connection.execute(
                        insert(grants).values(
                            user=owner,
                            environment=environment,
                            role=role,
                            granted_by="upgrade",
                            granted_at=stamp,
                        )
                    )
        admin_made = True


def _sandbox(connection: Connection) -> None:
    columns = {c["name"] for c in inspect(connection).get_columns("environments")}
    if "isolation" not in columns:
        connection.execute(
            text(
                "ALTER TABLE environments ADD COLUMN isolation VARCHAR(16) NOT NULL "
                "DEFAULT 'preferred'"
            )
        )
    if "domain" not in columns:
        connection.execute(text("ALTER TABLE environments ADD COLUMN domain VARCHAR(253)"))
    schema.metadata.create_all(connection, tables=[schema.app_users])


def _console(connection: Connection) -> None:
    columns = {c["name"] for c in inspect(connection).get_columns("users")}
    if "password_hash" not in columns:
        connection.execute(text("ALTER TABLE users ADD COLUMN password_hash TEXT"))
    if "groups" not in columns:
        connection.execute(text("ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '[]'"))
    if "oidc_subject" not in columns:
        connection.execute(text("ALTER TABLE users ADD COLUMN oidc_subject TEXT"))
    if "credentials_mac" not in columns:
        connection.execute(text("ALTER TABLE users ADD COLUMN credentials_mac VARCHAR(64)"))
    columns = {c["name"] for c in inspect(connection).get_columns("environments")}
    if "access" not in columns:
        connection.execute(
            text("""ALTER TABLE environments ADD COLUMN access TEXT NOT NULL DEFAULT '"public"'""")
        )
    schema.metadata.create_all(
        connection,
        tables=[
            schema.sessions,
            schema.sign_in_failures,
            schema.app_access,
            schema.usage,
            schema.usage_seen,
        ],
    )


def _schedules(connection: Connection) -> None:
    columns = {column["name"] for column in inspect(connection).get_columns("environments")}
    if "schedules" not in columns:
        connection.execute(
            text("ALTER TABLE environments ADD COLUMN schedules VARCHAR(8) NOT NULL DEFAULT ''")
        )
    schema.metadata.create_all(connection, tables=[schema.schedules, schema.runs, schema.run_log])


def _sleep(connection: Connection) -> None:
    columns = {column["name"] for column in inspect(connection).get_columns("environments")}
    if "sleep_after" not in columns:
        connection.execute(
            text("ALTER TABLE environments ADD COLUMN sleep_after VARCHAR(16) NOT NULL DEFAULT ''")
        )


def _run_email(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=[schema.run_email])


def _retention(connection: Connection) -> None:
    columns = {column["name"] for column in inspect(connection).get_columns("bundles")}
    if "removed_at" not in columns:
        connection.execute(text("ALTER TABLE bundles ADD COLUMN removed_at VARCHAR(32)"))


def _git_watches(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=[schema.git_watches])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "environments, apps, bundles, releases, checks, approvals, operations, audit", _initial
    ),
    Migration(2, "release step durations", _release_steps),
    Migration(3, "variables and API tokens", _variables_and_tokens),
    Migration(
        4,
        "environments as code: data connections, outputs, variables, secrets; settings",
        _environments_as_code,
    ),
    Migration(
        5, "users, roles per environment, tokens that expire and can be revoked", _users_and_roles
    ),
    Migration(6, "sandbox: an app's own user per environment, isolation, host routing", _sandbox),
    Migration(7, "console: passwords, sessions, viewer access, usage", _console),
    Migration(8, "schedules and runs", _schedules),
    Migration(9, "sleep after an idle time per environment", _sleep),
    Migration(10, "who is emailed how runs end", _run_email),
    Migration(11, "retention: bundles whose files gc removed", _retention),
    Migration(12, "git-driven mode remembers each watched branch", _git_watches),
)
LATEST = MIGRATIONS[-1].version


def current_version(connection: Connection) -> int:
    if not inspect(connection).has_table("schema_migrations"):
        return 0
    versions = connection.execute(select(schema.schema_migrations.c.version)).scalars().all()
    return max(versions, default=0)


def migrate(engine: Engine) -> list[int]:
    """Apply every pending migration; return the versions applied (empty when up to date)."""
    applied: list[int] = []
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Two servers starting at once: the second waits, then finds nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(7007001)"))
        version = current_version(connection)
        if version > LATEST:
            raise StorageError(
                f"the metadata database is at schema version {version}, newer than this "
                f"Conveyor knows ({LATEST}); upgrade Conveyor"
            )
        for migration in MIGRATIONS:
            if migration.version <= version:
                continue
            migration.apply(connection)
            connection.execute(
                insert(schema.schema_migrations).values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=datetime.now(UTC).isoformat(timespec="seconds"),
                )
            )
            applied.append(migration.version)
    return applied
