"""Releases on a real database: the state machine, the live pointer, checks and verification."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError as DatabaseIntegrityError

from conveyor.domain.releases import CheckKind, CheckResult, ReleaseKind, ReleaseState
from conveyor.errors import Conflict, InvalidTransition
from conveyor.storage import catalog, releases, schema


def add_bundle(store, bundle_id: str, app: str = "hello") -> None:
    with store.transaction() as connection:
        catalog.ensure_app(connection, app)
        catalog.save_bundle(
            connection,
            bundle_id=bundle_id,
            app=app,
            blob=bundle_id,
            size=1,
            manifest={"files": []},
            provenance={},
            uploaded_by="ana",
        )


def new_release(store, bundle_id: str, environment: str = "dev"):
    with store.transaction() as connection:
        return releases.create_release(
            connection,
            app="hello",
            environment=environment,
            bundle_id=bundle_id,
            kind=ReleaseKind.DEPLOY,
            created_by="ana",
        )


def go_live(store, release_id: int):
    with store.transaction() as connection:
        releases.transition(connection, release_id, ReleaseState.STARTING)
        releases.transition(connection, release_id, ReleaseState.VERIFYING)
        releases.record_check(connection, release_id, CheckResult(CheckKind.HEALTH, True))
        assert releases.mark_verified(connection, release_id, ("health",))
        return releases.switch_live(connection, release_id)


def test_release_follows_the_state_machine(store):
    add_bundle(store, "a" * 64)
    release = new_release(store, "a" * 64)
    assert release.state is ReleaseState.PENDING
    with store.transaction() as connection, pytest.raises(InvalidTransition) as caught:
        releases.transition(connection, release.id, ReleaseState.VERIFYING)
    assert "pending; it cannot become verifying" in str(caught.value)
    with store.transaction() as connection:
        releases.transition(connection, release.id, ReleaseState.FAILED, "health check timed out")
    with store.transaction() as connection:
        failed = releases.get_release(connection, release.id)
        assert (failed.state, failed.reason) == (ReleaseState.FAILED, "health check timed out")
        with pytest.raises(InvalidTransition, match="it is final"):
            releases.transition(connection, release.id, ReleaseState.STARTING)


def test_switch_makes_one_live_and_retires_the_previous(store):
    add_bundle(store, "a" * 64)
    add_bundle(store, "b" * 64)
    first = new_release(store, "a" * 64)
    assert go_live(store, first.id) is None
    second = new_release(store, "b" * 64)
    replaced = go_live(store, second.id)
    assert replaced is not None and replaced.id == first.id
    with store.transaction() as connection:
        assert releases.live_release(connection, "hello", "dev").id == second.id
        assert releases.get_release(connection, first.id).state is ReleaseState.RETIRED
        assert releases.was_live_in(connection, "a" * 64) == {"dev"}
        assert releases.verified_in(connection, "b" * 64) == {"dev"}


def test_the_database_refuses_a_second_live_release(store):
    add_bundle(store, "a" * 64)
    add_bundle(store, "b" * 64)
    first, second = new_release(store, "a" * 64), new_release(store, "b" * 64)
    go_live(store, first.id)
    with pytest.raises(DatabaseIntegrityError), store.transaction() as connection:
        connection.execute(
            insert(schema.live_releases).values(
                app="hello", environment="dev", release=second.id, since="now"
            )
        )


def test_an_unverified_release_cannot_go_live(store):
    add_bundle(store, "a" * 64)
    release = new_release(store, "a" * 64)
    with store.transaction() as connection:
        releases.transition(connection, release.id, ReleaseState.STARTING)
        releases.transition(connection, release.id, ReleaseState.VERIFYING)
        releases.record_check(connection, release.id, CheckResult(CheckKind.HEALTH, True))
        releases.record_check(
            connection, release.id, CheckResult(CheckKind.TESTS, False, "1 failed")
        )
        assert not releases.mark_verified(connection, release.id, ("health", "tests"))
        with pytest.raises(Conflict, match="has not passed its checks"):
            releases.switch_live(connection, release.id)
    with store.transaction() as connection:
        reason = releases.why_not_verified(connection, "a" * 64, "dev")
    assert reason == f"its tests check failed in release {release.id}"


def test_a_switch_in_a_failed_transaction_leaves_the_old_release_live(store):
    add_bundle(store, "a" * 64)
    add_bundle(store, "b" * 64)
    first = new_release(store, "a" * 64)
    go_live(store, first.id)
    second = new_release(store, "b" * 64)
    with pytest.raises(RuntimeError), store.transaction() as connection:
        releases.transition(connection, second.id, ReleaseState.STARTING)
        releases.transition(connection, second.id, ReleaseState.VERIFYING)
        releases.record_check(connection, second.id, CheckResult(CheckKind.HEALTH, True))
        releases.mark_verified(connection, second.id, ("health",))
        releases.switch_live(connection, second.id)
        raise RuntimeError("the proxy could not swap the route")
    with store.transaction() as connection:
        assert releases.live_release(connection, "hello", "dev").id == first.id
        assert releases.get_release(connection, second.id).state is ReleaseState.PENDING


def test_history_newest_first_and_bundle_lookup_by_alias(store):
    add_bundle(store, "abcdef" + "0" * 58)
    ids = [new_release(store, "abcdef" + "0" * 58, env).id for env in ("dev", "test", "dev")]
    with store.transaction() as connection:
        assert [r.id for r in releases.history(connection, "hello")] == ids[::-1]
        assert [r.id for r in releases.history(connection, "hello", "dev")] == [ids[2], ids[0]]
        assert catalog.get_bundle(connection, "hello", "abcdef0")["id"].startswith("abcdef")
