"""Secrets at rest and the keys outside the database: what someone holding only the database
learns and can do, key rotation, and upgrading a database written before any of this."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text, update

from conveyor.domain.access import Grant, Role
from conveyor.domain.audit import AuditEvent, event_body
from conveyor.domain.environments import DEFAULT_ENVIRONMENTS
from conveyor.errors import IntegrityError, StorageError, Unauthorized
from conveyor.services.context import Services
from conveyor.services.secrets import rotate_key
from conveyor.services.tokens import authenticate
from conveyor.storage import audit, catalog, schema, users
from conveyor.storage import variables as stored
from conveyor.storage.database import open_engine
from conveyor.storage.keyring import keys_path
from conveyor.storage.migrations import migrate
from conveyor.storage.store import Store


def with_app(store: Store, app: str = "hello") -> None:
    with store.transaction() as connection:
        catalog.ensure_app(connection, app)


def set_secret(store: Store, environment: str, name: str, value: str) -> None:
    with store.transaction() as connection:
        stored.set_variable(connection, "hello", environment, name, value, secret=True, by="ana")


def revealed(store: Store, environment: str) -> dict[str, str | None]:
    with store.transaction() as connection:
        found = stored.variables_of(connection, "hello", environment, reveal=True)
    return {v.name: v.value for v in found}


def raw_values(store: Store) -> list[str]:
    with store.transaction() as connection:
        return list(connection.execute(select(schema.variables.c.value)).scalars())


def test_the_database_alone_holds_no_secret_value(store):
    with_app(store)
    set_secret(store, "prod", "DB_PASSWORD", "correct horse battery staple")
    assert revealed(store, "prod") == {"DB_PASSWORD": "correct horse battery staple"}
    [value] = raw_values(store)
    assert "correct horse" not in value and value.startswith("cv1:k1:")
    with store.transaction() as connection:
        masked = stored.variables_of(connection, "hello", "prod")
    assert masked[0].value is None  # not decrypted unless asked for


def test_a_sealed_value_copied_to_another_place_does_not_decrypt(store):
    """Someone who can write the database copies Prod's sealed password into a Dev variable,
    hoping a Dev app gets it: the value is bound to its place and fails to decrypt."""
    with_app(store)
    set_secret(store, "prod", "DB_PASSWORD", "prod-only")
    set_secret(store, "dev", "DB_PASSWORD", "dev-value")
    table = schema.variables
    with store.transaction() as connection:
        prod_value = connection.execute(
            select(table.c.value).where(table.c.environment == "prod")
        ).scalar_one()
        connection.execute(
            update(table).where(table.c.environment == "dev").values(value=prod_value)
        )
    with pytest.raises(IntegrityError, match="copied from another place"):
        revealed(store, "dev")


def test_the_home_and_the_keys_file_are_private(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVEYOR_KEYS_FILE", raising=False)
    store = Store.open(tmp_path / "home")
    try:
        keys = tmp_path / "home" / "keys.json"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
        assert store.keys.path == keys
    finally:
        store.close()


def test_keys_can_live_outside_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEYOR_KEYS_FILE", str(tmp_path / "mounted" / "conveyor-keys.json"))
    store = Store.open(tmp_path / "home")
    store.close()
    assert (tmp_path / "mounted" / "conveyor-keys.json").exists()
    assert not (tmp_path / "home" / "keys.json").exists()


def test_a_store_without_its_keys_refuses_to_open_and_makes_no_new_ones(tmp_path):
    home = tmp_path / "home"
    Store.open(home).close()
    (home / "keys.json").rename(tmp_path / "keys.backup")
    with pytest.raises(StorageError, match="keys.json is missing. Restore it"):
        Store.open(home)
    assert not (home / "keys.json").exists()
    # Another server's keys are no better.
    Store.open(tmp_path / "other").close()
    (tmp_path / "other" / "keys.json").rename(home / "keys.json")
    with pytest.raises(StorageError, match="not the keys this database was sealed with"):
        Store.open(home)
    (tmp_path / "keys.backup").replace(home / "keys.json")
    Store.open(home).close()


def test_rotation_re_encrypts_everything_and_drops_the_old_key(store):
    with_app(store)
    set_secret(store, "prod", "A", "alpha")
    set_secret(store, "test", "B", "beta")
    before = raw_values(store)
    rotation = rotate_key(Services(store, runtime=None), "root")  # type: ignore[arg-type]
    assert rotation.key == "k2" and rotation.resealed == 2 and rotation.dropped == ["k1"]
    after = raw_values(store)
    assert all(v.startswith("cv1:k2:") for v in after) and set(after).isdisjoint(before)
    assert revealed(store, "prod") == {"A": "alpha"} and revealed(store, "test") == {"B": "beta"}
    on_disk = json.loads(store.keys.path.read_text())
    assert [k["id"] for k in on_disk["secrets"]] == ["k2"]
    with store.transaction() as connection:
        assert audit.events(connection)[-1].action == "secrets.rotate-key"


def test_a_rotation_that_stops_half_way_loses_nothing(store):
    """The new key is saved before anything is sealed with it: if the transaction fails, the
    old values still decrypt with the old key, which is still in the file."""
    with_app(store)
    set_secret(store, "prod", "A", "alpha")
    store.keys.add_secret_key()  # the first step of a rotation; then the server dies
    assert [k["id"] for k in json.loads(store.keys.path.read_text())["secrets"]] == ["k2", "k1"]
    assert revealed(store, "prod") == {"A": "alpha"}
    set_secret(store, "prod", "B", "beta")  # new values use the new key
    assert revealed(store, "prod") == {"A": "alpha", "B": "beta"}


def plain(*fields: object) -> str:
    """The unkeyed rule of versions before keyed MACs: SHA-256 of the event's bytes."""
    return hashlib.sha256(event_body(*fields)).hexdigest()  # type: ignore[arg-type]


def plain_chain(count: int) -> list[AuditEvent]:
    events, prev = [], "0" * 64
    for seq in range(1, count + 1):
        at = f"2026-01-0{seq}T00:00:00+00:00"
        digest = plain(prev, seq, at, "ana", "deploy", "hello/dev", {"n": seq})
        events.append(AuditEvent(seq, at, "ana", "deploy", "hello/dev", {"n": seq}, prev, digest))
        prev = digest
    return events


def old_database(database_url: str) -> None:
    """A database as version 4 of the schema left it: token owners but no users, secrets in
    plain text, an audit chain of plain SHA-256 hashes, and no keys anywhere."""
    engine = open_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            for table in ("sessions", "sign_in_failures", "app_access", "usage", "usage_seen"):
                connection.execute(text(f"DROP TABLE {table}"))  # version 7's
            connection.execute(text("DROP TABLE grants"))
            connection.execute(text("DROP TABLE users"))
            connection.execute(
                schema.schema_migrations.delete().where(schema.schema_migrations.c.version >= 5)
            )
            catalog.save_environments(connection, DEFAULT_ENVIRONMENTS)
            catalog.ensure_app(connection, "hello")
            for number, owner in enumerate(("ana", "ana", "bob", "ci", "server")):
                connection.execute(
                    insert(schema.api_tokens).values(
                        digest=hashlib.sha256(f"cvt_old-{number}".encode()).hexdigest(),
                        owner=owner,
                        created_at="2026-01-01T00:00:00+00:00",
                    )
                )
            connection.execute(
                insert(schema.variables).values(
                    app="hello",
                    environment="prod",
                    name="DB_PASSWORD",
                    value="plain-text-password",
                    secret=True,
                    updated_by="ana",
                    updated_at="2026-01-01T00:00:00+00:00",
                )
            )
            bundle = "ab" * 32
            connection.execute(
                insert(schema.bundles).values(
                    id=bundle,
                    app="hello",
                    blob=bundle,
                    size=1,
                    manifest="{}",
                    provenance="{}",
                    uploaded_by="ci",
                    created_at="2026-01-01T00:00:00+00:00",
                )
            )
            connection.execute(
                insert(schema.approvals).values(
                    app="hello",
                    environment="prod",
                    bundle=bundle,
                    by="bob",
                    comment="",
                    created_at="2026-01-01T00:00:00+00:00",
                )
            )
            for event in plain_chain(3):
                connection.execute(
                    insert(schema.audit_events).values(
                        seq=event.seq,
                        at=event.at,
                        actor=event.actor,
                        action=event.action,
                        subject=event.subject,
                        details=json.dumps(dict(event.details), sort_keys=True),
                        prev_hash=event.prev_hash,
                        hash=event.hash,
                    )
                )
            connection.execute(update(schema.audit_head).values(seq=3, hash=event.hash))
            connection.execute(schema.settings.delete())
    finally:
        engine.dispose()


def test_an_old_database_is_upgraded_in_place(database_url, tmp_path):
    old_database(database_url)
    store = Store.open(tmp_path / "home", database_url)
    try:
        assert "plain-text-password" not in raw_values(store)[0]
        assert revealed(store, "prod") == {"DB_PASSWORD": "plain-text-password"}
        with store.transaction() as connection:
            result = audit.verify(connection)
            events = audit.events(connection)
            people = {u.name: u for u in users.list_users(connection)}
        assert result.problems == [] and result.unkeyed == 3
        assert events[3].action == "audit.keyed" and events[3].details["unkeyed_events"] == 3
        assert store.keys.audit_from == 4
        # The first token's owner is the admin. Any token could mint tokens for any name
        # before, so the others get only the default roles (bob approved in prod, but that
        # proves nothing), and a name no user may have becomes no user.
        assert people["ana"].admin and not people["bob"].admin and not people["ci"].admin
        assert people["bob"].grants == {
            Grant("dev", Role.DEVELOPER),
            Grant("test", Role.VIEWER),
            Grant("prod", Role.VIEWER),
        }
        assert "server" not in people
        # Old tokens still work for a while, keyed now, and stop within 30 days.
        services = Services(store, runtime=None)  # type: ignore[arg-type]
        user, token = authenticate(services, "cvt_old-2")
        assert user.name == "bob" and token.expires_at is not None
        assert token.expires_at <= (datetime.now(UTC) + timedelta(days=31)).isoformat()
        with pytest.raises(Unauthorized, match="'server', who is not a user"):
            authenticate(services, "cvt_old-4")
        with store.transaction() as connection:
            stored = list(connection.execute(select(schema.api_tokens.c.digest)).scalars())
        assert hashlib.sha256(b"cvt_old-2").hexdigest() not in stored
    finally:
        store.close()
    # Opening again changes nothing more.
    again = Store.open(tmp_path / "home", database_url)
    try:
        with again.transaction() as connection:
            assert len(audit.events(connection)) == 4
            assert audit.verify(connection).problems == []
    finally:
        again.close()


def test_upgraded_history_cannot_be_rewritten_with_the_old_rule(database_url, tmp_path):
    """Events from before the upgrade are checked with the plain hash, but the first keyed
    event's MAC covers the last of them: rewriting them breaks the chain there."""
    old_database(database_url)
    store = Store.open(tmp_path / "home", database_url)
    try:
        table = schema.audit_events
        rewritten, prev = [], "0" * 64
        for event in plain_chain(3):
            actor = "eve"
            digest = plain(prev, event.seq, event.at, actor, event.action, event.subject, {})
            rewritten.append((event.seq, actor, prev, digest))
            prev = digest
        with store.transaction() as connection:
            for seq, actor, before, digest in rewritten:
                connection.execute(
                    update(table)
                    .where(table.c.seq == seq)
                    .values(actor=actor, details="{}", prev_hash=before, hash=digest)
                )
            problems = audit.verify(connection).problems
        assert problems == ["event 4 does not follow the event before it"]
    finally:
        store.close()


def test_keys_file_of_another_database_is_not_taken_for_an_upgrade(database_url, tmp_path):
    Store.open(tmp_path / "elsewhere").close()
    old_database(database_url)
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "elsewhere" / "keys.json").rename(keys_path(home))
    with pytest.raises(StorageError, match="already secures a database"):
        Store.open(home, database_url)


def test_removing_the_record_of_the_keys_does_not_start_the_chain_anew(database_url, tmp_path):
    """Someone with only the database truncates the keyed events, rewrites the unkeyed ones
    and removes the database's record of its keys, hoping the next start keys the chain again
    from there. The keys file is bound to the database it secured: the start is refused."""
    old_database(database_url)
    home = tmp_path / "home"
    Store.open(home, database_url).close()
    engine = open_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(schema.audit_events.delete().where(schema.audit_events.c.seq > 3))
            connection.execute(update(schema.audit_head).values(seq=3))
            connection.execute(
                schema.settings.delete().where(schema.settings.c.key == "keys_check")
            )
    finally:
        engine.dispose()
    with pytest.raises(StorageError, match="already secures a database"):
        Store.open(home, database_url)


def test_a_secret_encrypted_already_is_not_encrypted_again(tmp_path):
    home = tmp_path / "home"
    store = Store.open(home)
    with store.transaction() as connection:
        catalog.save_environments(connection, DEFAULT_ENVIRONMENTS)
    with_app(store)
    set_secret(store, "prod", "A", "alpha")
    store.close()
    (home / "keys.json").unlink()
    engine = open_engine(f"sqlite:///{home / 'conveyor.db'}")
    with engine.begin() as connection:
        connection.execute(schema.settings.delete().where(schema.settings.c.key == "keys_check"))
    engine.dispose()
    with pytest.raises(StorageError, match="is encrypted already"):
        Store.open(home)


def test_a_keys_file_others_can_read_is_made_private(tmp_path):
    store = Store.open(tmp_path / "home")
    store.close()
    keys = tmp_path / "home" / "keys.json"
    os.chmod(keys, 0o644)
    Store.open(tmp_path / "home").close()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600


def test_a_rotation_whose_key_cannot_be_saved_changes_nothing(store):
    """A keys file that cannot be written (here: a directory stands where it would be
    replaced; in life, a read-only secret mount): the rotation is refused and the new key is
    never used, so nothing is encrypted with a key no file holds."""
    with_app(store)
    set_secret(store, "prod", "A", "alpha")
    path = store.keys.path
    kept = path.read_bytes()
    path.unlink()
    path.mkdir()
    try:
        with pytest.raises(StorageError, match="cannot write the keys file"):
            rotate_key(Services(store, runtime=None), "root")  # type: ignore[arg-type]
        assert [k.id for k in store.keys.secret_keys] == ["k1"]
        set_secret(store, "prod", "B", "beta")
    finally:
        path.rmdir()
        path.write_bytes(kept)
    assert all(v.startswith("cv1:k1:") for v in raw_values(store))
    assert revealed(store, "prod") == {"A": "alpha", "B": "beta"}


def test_a_server_sharing_the_keys_file_follows_another_ones_rotation(
    database_url, tmp_path, monkeypatch
):
    """Two servers on one database and one keys file: after one rotates (and drops the old
    key), what the other encrypts next is under the new key, and everything decrypts."""
    monkeypatch.setenv("CONVEYOR_KEYS_FILE", str(tmp_path / "shared-keys.json"))
    first = Store.open(tmp_path / "a", database_url)
    second = Store.open(tmp_path / "b", database_url)
    try:
        with first.transaction() as connection:
            catalog.save_environments(connection, DEFAULT_ENVIRONMENTS)
        with_app(first)
        set_secret(first, "prod", "A", "alpha")
        rotate_key(Services(first, runtime=None), "root")  # type: ignore[arg-type]
        set_secret(second, "test", "B", "beta")  # the second server still had k1 in memory
        assert all(v.startswith("cv1:k2:") for v in raw_values(first))
        assert revealed(second, "prod") == {"A": "alpha"}
        assert revealed(first, "test") == {"B": "beta"}
    finally:
        first.close()
        second.close()
