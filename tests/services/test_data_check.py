"""`conveyor data check` against a real PostgreSQL: a login set up as docs/data.md says passes;
a superuser, a login with INSERT, a login that inherits a writing role and one that may create
in a schema fail, each named with the SQL that fixes it; the server refuses to release with an
unsafe one unless the environments file says `verified: false`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from conveyor.domain.environments import DataConnection, Environment
from conveyor.errors import PolicyViolation
from conveyor.services.data_check import check_connection, require_safe


def environment_with(url: str, *, verified: bool = True) -> tuple[Environment, DataConnection]:
    connection = DataConnection("warehouse", url, "read-only", verified=verified)
    return Environment("test", 1, 8702, data=(connection,)), connection


@pytest.fixture
def login(warehouse) -> Iterator:
    """make(*grants) -> the URL of a new login with a password, after running ``grants``
    (SQL with {login} in it) as the database's owner; all dropped afterwards."""
    owner_url = make_url(warehouse["prod"]["url"])
    owner = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make(*grants: str) -> str:
        name = f"login_{uuid.uuid4().hex[:8]}"
        made.append(name)
        with owner.connect() as connection:
            connection.execute(text(f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'pw-{name}'"))
            connection.execute(text(f'GRANT USAGE ON SCHEMA public TO "{name}"'))
            for grant in grants:
                sql = grant.format(login=f'"{name}"', database=f'"{owner_url.database}"')
                connection.execute(text(sql))
        return owner_url.set(username=name, password=f"pw-{name}").render_as_string(
            hide_password=False
        )

    try:
        yield make
    finally:
        with owner.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP OWNED BY "{name}"'))
                connection.execute(text(f'DROP ROLE "{name}"'))
        owner.dispose()


def test_a_login_set_up_as_the_docs_say_is_safe(warehouse):
    environment, data = environment_with(warehouse["test"]["url"])
    found = check_connection(environment, data)
    assert found.verdict == "safe", found
    assert found.problems == ()
    require_safe(environment, lambda line: None)


def test_a_superuser_is_unsafe(warehouse):
    environment, data = environment_with(warehouse["prod"]["url"])  # the owner: a superuser
    found = check_connection(environment, data)
    assert found.verdict == "unsafe"
    assert found.problems[0].privilege == "superuser"
    assert found.problems[0].fix == f'ALTER ROLE "{found.login}" NOSUPERUSER;'


def test_a_login_with_insert_is_unsafe_with_the_revoke_that_fixes_it(login):
    url = login("GRANT SELECT, INSERT ON sales TO {login}")
    environment, data = environment_with(url)
    found = check_connection(environment, data)
    assert found.verdict == "unsafe"
    [problem] = found.problems
    assert problem.privilege == "INSERT on public.sales"
    assert problem.fix == (
        f'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON "public"."sales" FROM "{found.login}", PUBLIC;'
    )


def test_a_login_that_inherits_a_writing_role_is_unsafe(login, warehouse):
    writer = f"writer_{uuid.uuid4().hex[:8]}"
    owner = create_engine(make_url(warehouse["prod"]["url"]), isolation_level="AUTOCOMMIT")
    try:
        with owner.connect() as connection:
            connection.execute(text(f'CREATE ROLE "{writer}" NOLOGIN'))
            connection.execute(text(f'GRANT UPDATE, DELETE ON sales TO "{writer}"'))
        url = login(f'GRANT "{writer}" TO {{login}}')
        environment, data = environment_with(url)
        found = check_connection(environment, data)
        assert found.verdict == "unsafe"
        [problem] = found.problems
        assert problem.privilege == (
            f"DELETE, UPDATE on public.sales (through role {writer}, which {found.login} can use)"
        )
        assert problem.fix == f'REVOKE "{writer}" FROM "{found.login}";'
        with pytest.raises(PolicyViolation) as refused:
            require_safe(environment, lambda line: None)
        assert f"its login {found.login} can write" in str(refused.value)
        assert f'REVOKE "{writer}" FROM "{found.login}";' in str(refused.value)
        # Marked `verified: false` in the environments file, it is used, with a note.
        unverified, _ = environment_with(url, verified=False)
        notes: list[str] = []
        require_safe(unverified, notes.append)
        assert "without proof that its login cannot write" in notes[0]
    finally:
        with owner.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{writer}"'))
            connection.execute(text(f'DROP ROLE "{writer}"'))
        owner.dispose()


def test_a_login_that_may_create_in_a_schema_is_unsafe(login):
    environment, data = environment_with(login("GRANT CREATE ON SCHEMA public TO {login}"))
    found = check_connection(environment, data)
    assert [p.privilege for p in found.problems] == ["CREATE on schema public"]


def test_a_connection_that_cannot_be_reached_is_an_error_not_a_pass(warehouse):
    url = make_url(warehouse["test"]["url"]).set(port=1).render_as_string(hide_password=False)
    environment, data = environment_with(url)
    found = check_connection(environment, data)
    assert found.verdict == "error" and "could not connect" in found.note
    with pytest.raises(PolicyViolation, match="could not be checked"):
        require_safe(environment, lambda line: None)


@pytest.mark.parametrize(
    ("grants", "privilege", "fix"),
    [
        (
            ["GRANT UPDATE (amount) ON sales TO {login}"],
            "UPDATE on columns amount of public.sales",
            'REVOKE UPDATE ("amount") ON "public"."sales" FROM "{login}", PUBLIC;',
        ),
        (
            ["CREATE SEQUENCE counter", "GRANT USAGE ON SEQUENCE counter TO {login}"],
            "USAGE or UPDATE on sequence public.counter",
            'REVOKE USAGE, UPDATE ON SEQUENCE "public"."counter" FROM "{login}", PUBLIC;',
        ),
        (
            ["GRANT pg_write_server_files TO {login}"],
            "member of pg_write_server_files (through role pg_write_server_files, "
            "which {login} can use)",
            'REVOKE "pg_write_server_files" FROM "{login}";',
        ),
        (["ALTER ROLE {login} CREATEROLE"], "CREATEROLE", 'ALTER ROLE "{login}" NOCREATEROLE;'),
        (
            ["CREATE TABLE handed_over (x int)", "ALTER TABLE handed_over OWNER TO {login}"],
            "owns relation public.handed_over",
            'ALTER TABLE "public"."handed_over" OWNER TO <an owner that is not {login}>;',
        ),
        (
            ["GRANT CREATE ON DATABASE {database} TO {login}"],
            "CREATE on database {database}",
            'REVOKE CREATE ON DATABASE "{database}" FROM "{login}", PUBLIC;',
        ),
        (
            ["ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT ON TABLES TO {login}"],
            "INSERT on tables postgres creates later (default privileges)",
            'ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "public" REVOKE INSERT '
            'ON TABLES FROM "{login}", PUBLIC;',
        ),
    ],
    ids=["column", "sequence", "server-files", "createrole", "owner", "db-create", "defaults"],
)
def test_each_other_way_to_write_is_found_with_its_fix(login, grants, privilege, fix):
    """Beyond table grants: a login that could write some other way is unsafe too."""
    url = login(*grants)
    name = make_url(url).database
    environment, data = environment_with(url)
    found = check_connection(environment, data)
    assert found.verdict == "unsafe", found
    expected = (
        privilege.format(login=found.login, database=name),
        fix.format(login=found.login, database=name),
    )
    assert expected in [(p.privilege, p.fix) for p in found.problems], found.problems


def test_sqlite_is_safe_only_inside_the_sandbox(tmp_path):
    environment = Environment(
        "test",
        1,
        8702,
        data=(DataConnection("local", f"sqlite:///{tmp_path / 'a.db'}", "read-only"),),
    )
    [data] = environment.data
    assert check_connection(environment, data, sandboxed=True).verdict == "safe"
    unsandboxed = check_connection(environment, data, sandboxed=False)
    assert unsandboxed.verdict == "unsafe" and "install bubblewrap" in unsandboxed.note
