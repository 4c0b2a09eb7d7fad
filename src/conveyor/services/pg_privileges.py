"""What a PostgreSQL login could change, asked of the database itself (for `conveyor data
check`): every way it could write, as itself, through roles it inherits, and through roles it
may ``SET ROLE`` to, each with the SQL that takes it away.

Looked at, for the login and each role it can reach:
- role attributes: superuser, ``BYPASSRLS``, ``CREATEROLE`` (it could grant itself anything),
  ``CREATEDB``; membership of ``pg_write_all_data``, ``pg_write_server_files`` or
  ``pg_execute_server_program``;
- ownership of the database, a schema or a relation (an owner alters or drops whatever its
  grants say);
- INSERT, UPDATE, DELETE, TRUNCATE on a table or view, column grants included; USAGE or UPDATE
  on a sequence (``nextval``, ``setval``);
- CREATE on the database or on a schema;
- default privileges that would give it write access to tables created later.

Not covered (docs/security.md says so): functions declared ``SECURITY DEFINER`` that write on
a caller's behalf, large objects (any login may create them), other databases of the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

SYSTEM = "('pg_catalog', 'information_schema')"
#: Predefined roles that write, or reach the server's files and programs, whatever the grants.
WRITING_ROLES = frozenset(
    {"pg_write_all_data", "pg_write_server_files", "pg_execute_server_program"}
)

REACHABLE = """
WITH RECURSIVE reachable(oid) AS (
    SELECT oid FROM pg_roles WHERE rolname = current_user
    UNION
    SELECT m.roleid FROM pg_auth_members m JOIN reachable r ON m.member = r.oid
)
SELECT oid, rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb
FROM pg_roles WHERE oid IN (SELECT oid FROM reachable)
ORDER BY rolname = current_user DESC, rolname
"""

TABLE_PRIVILEGES = f"""
SELECT n.nspname, c.relname, p.privilege,
       has_table_privilege(:role, c.oid, p.privilege) AS whole
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN (VALUES ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE')) AS p(privilege)
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN {SYSTEM} AND n.nspname NOT LIKE 'pg_toast%'
  AND (has_table_privilege(:role, c.oid, p.privilege)
       OR (p.privilege IN ('INSERT', 'UPDATE')
           AND has_any_column_privilege(:role, c.oid, p.privilege)))
ORDER BY 1, 2, 3
"""

COLUMNS = """
SELECT attname FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0 AND NOT a.attisdropped
  AND has_column_privilege(:role, c.oid, a.attnum, :privilege)
ORDER BY a.attnum
"""

SEQUENCES = f"""
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT IN {SYSTEM}
  AND (has_sequence_privilege(:role, c.oid, 'UPDATE')
       OR has_sequence_privilege(:role, c.oid, 'USAGE'))
ORDER BY 1, 2
"""

OWNED = f"""
SELECT 'database' AS kind, NULL AS schema, datname AS name FROM pg_database
 WHERE datname = current_database() AND datdba = :oid
UNION ALL
SELECT 'schema', NULL, nspname FROM pg_namespace
 WHERE nspowner = :oid AND nspname NOT IN {SYSTEM} AND nspname NOT LIKE 'pg\\_%'
UNION ALL
SELECT 'relation', n.nspname, c.relname FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relowner = :oid AND n.nspname NOT IN {SYSTEM} AND n.nspname NOT LIKE 'pg\\_%'
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
ORDER BY 1, 2, 3
"""

CREATE = f"""
SELECT 'database', current_database()
 WHERE has_database_privilege(:role, current_database(), 'CREATE')
UNION ALL
SELECT 'schema', nspname FROM pg_namespace
 WHERE nspname NOT IN {SYSTEM} AND nspname NOT LIKE 'pg\\_%'
   AND has_schema_privilege(:role, oid, 'CREATE')
"""

DEFAULTS = """
SELECT pg_get_userbyid(d.defaclrole), n.nspname, a.privilege_type
FROM pg_default_acl d
LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL aclexplode(d.defaclacl) a
WHERE d.defaclobjtype = 'r' AND a.grantee IN (0, :oid)
  AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
ORDER BY 1, 2, 3
"""


@dataclass(frozen=True)
class Unsafe:
    """One way the login could write, and the SQL that takes it away."""

    privilege: str
    fix: str


def problems(connection: Connection, login: str) -> list[Unsafe]:
    """Every way ``login`` (the connection's current user) could write."""
    run = connection.execute
    roles = run(text(REACHABLE)).all()
    found: list[Unsafe] = []
    quoted = quote(login)
    # Privileges the login holds only through a role it can use are that role's to fix.
    through_roles: set[tuple[str, str, str]] = set()
    for _, role, *_ in roles:
        if role != login:
            for schema, table, privilege, _ in run(text(TABLE_PRIVILEGES), {"role": role}).all():
                through_roles.add((schema, table, privilege))
    for oid, role, superuser, bypassrls, createrole, createdb in roles:
        own = role == login
        via = "" if own else f" (through role {role}, which {login} can use)"
        membership = f"REVOKE {quote(role)} FROM {quoted};"
        if not own and role in WRITING_ROLES:
            found.append(Unsafe(f"member of {role}{via}", membership))
            continue
        if superuser:
            fix = f"ALTER ROLE {quote(role)} NOSUPERUSER;" if own else membership
            found.append(Unsafe(f"superuser{via}", fix))
            continue  # everything follows from it: this is the one to fix
        for attribute, flag in (
            ("BYPASSRLS", bypassrls),
            ("CREATEROLE", createrole),
            ("CREATEDB", createdb),
        ):
            if flag:
                fix = f"ALTER ROLE {quote(role)} NO{attribute};" if own else membership
                found.append(Unsafe(f"{attribute}{via}", fix))
        for kind, schema, name in run(text(OWNED), {"oid": oid}).all():
            where = f"{schema}.{name}" if schema else name
            target = {
                "database": f"DATABASE {quote(name)}",
                "schema": f"SCHEMA {quote(name)}",
                "relation": f"TABLE {quote(schema)}.{quote(name)}",
            }[kind]
            found.append(
                Unsafe(
                    f"owns {kind} {where}{via}",
                    f"ALTER {target} OWNER TO <an owner that is not {login}>;",
                )
            )
        found += _table_privileges(connection, role, login, own, via, membership, through_roles)
        for schema, sequence in run(text(SEQUENCES), {"role": role}).all():
            fix = (
                f"REVOKE USAGE, UPDATE ON SEQUENCE {quote(schema)}.{quote(sequence)} "
                f"FROM {quoted}, PUBLIC;"
                if own
                else membership
            )
            found.append(Unsafe(f"USAGE or UPDATE on sequence {schema}.{sequence}{via}", fix))
        for kind, name in run(text(CREATE), {"role": role}).all():
            target = "DATABASE" if kind == "database" else "SCHEMA"
            fix = (
                f"REVOKE CREATE ON {target} {quote(name)} FROM {quoted}, PUBLIC;"
                if own
                else membership
            )
            if own or not any(u.fix == fix for u in found):
                found.append(Unsafe(f"CREATE on {kind} {name}{via}", fix))
        for owner, schema, privilege in run(text(DEFAULTS), {"oid": oid}).all():
            scope = f" IN SCHEMA {quote(schema)}" if schema else ""
            found.append(
                Unsafe(
                    f"{privilege} on tables {owner} creates later{via} (default privileges)",
                    f"ALTER DEFAULT PRIVILEGES FOR ROLE {quote(owner)}{scope} REVOKE "
                    f"{privilege} ON TABLES FROM {quote(role) if not own else quoted}, PUBLIC;",
                )
            )
    return found


def _table_privileges(
    connection: Connection,
    role: str,
    login: str,
    own: bool,
    via: str,
    membership: str,
    through_roles: set[tuple[str, str, str]],
) -> list[Unsafe]:
    tables: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for schema, table, privilege, whole in connection.execute(
        text(TABLE_PRIVILEGES), {"role": role}
    ).all():
        if own and (schema, table, privilege) in through_roles:
            continue
        tables.setdefault((schema, table), []).append((privilege, bool(whole)))
    found = []
    for (schema, table), privileges in tables.items():
        target = f"{quote(schema)}.{quote(table)}"
        if not own:
            names = ", ".join(p for p, _ in privileges)
            found.append(Unsafe(f"{names} on {schema}.{table}{via}", membership))
            continue
        whole = [p for p, entire in privileges if entire]
        if whole:
            found.append(
                Unsafe(
                    f"{', '.join(whole)} on {schema}.{table}",
                    f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {target} FROM "
                    f"{quote(login)}, PUBLIC;",
                )
            )
        for privilege in (p for p, entire in privileges if not entire):
            columns = [
                str(c)
                for (c,) in connection.execute(
                    text(COLUMNS),
                    {"schema": schema, "table": table, "role": role, "privilege": privilege},
                ).all()
            ]
            listed = ", ".join(quote(c) for c in columns)
            found.append(
                Unsafe(
                    f"{privilege} on columns {', '.join(columns)} of {schema}.{table}",
                    f"REVOKE {privilege} ({listed}) ON {target} FROM {quote(login)}, PUBLIC;",
                )
            )
    return found


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
