"""Deploy, promote, approve and roll back through the services, on a real store (SQLite and
PostgreSQL) with real bundles; the runtime is the in-memory one."""

from __future__ import annotations

import pytest

from conveyor.domain.access import Grant, Role
from conveyor.domain.environments import Environment, Policy
from conveyor.domain.releases import CheckKind, ReleaseState
from conveyor.errors import NotFound, OperationInProgress, PolicyViolation
from conveyor.services.pipeline import approve, deploy, promote, rollback
from conveyor.services.users import add_user, disable, grant, revoke
from conveyor.storage import audit, catalog, operations, releases


def live(services, environment: str):
    with services.store.transaction() as connection:
        return releases.live_release(connection, "hello", environment)


def test_registering_the_same_bundle_twice_is_idempotent(services, upload):
    first = upload("1")
    second = upload("1")
    assert first == second
    with services.store.transaction() as connection:
        uploads = [e for e in audit.events(connection) if e.action == "bundle.upload"]
    assert len(uploads) == 1


def test_dev_to_test_to_prod_promotes_the_same_bundle(services, runtime, upload):
    bundle = upload("1")
    outcome = deploy(services, "hello", bundle[:10], "dev", "ana")
    assert outcome.live and outcome.release.state is ReleaseState.LIVE
    assert runtime.routes[("hello", "dev")] == outcome.release.id
    to_test = promote(services, "hello", "ana")  # default target: the next environment
    assert to_test.release.environment == "test"
    to_prod = promote(services, "hello", "bob", to="prod")
    assert to_prod.release.environment == "prod"
    assert {live(services, e).bundle_id for e in ("dev", "test", "prod")} == {bundle}


def test_prod_refuses_a_direct_deploy(services, upload):
    bundle = upload("1")
    with pytest.raises(PolicyViolation, match="prod takes no direct deploys"):
        deploy(services, "hello", bundle, "prod", "ana")
    assert live(services, "prod") is None


def test_a_failed_check_keeps_the_old_release_serving_and_blocks_promotion(
    services, runtime, upload
):
    good = upload("1", checks="checks: {tests: pytest}\n")
    deploy(services, "hello", good, "test", "ana")
    bad = upload("2", checks="checks: {tests: pytest}\n")
    runtime.failing_checks[bad] = {CheckKind.TESTS}
    outcome = deploy(services, "hello", bad, "test", "ana")
    assert not outcome.live
    assert outcome.release.state is ReleaseState.FAILED
    assert "tests check failed" in outcome.release.reason
    assert live(services, "test").bundle_id == good
    assert outcome.release.id in runtime.stopped
    with pytest.raises(PolicyViolation) as caught:
        promote(services, "hello", "ana", to="prod", bundle_ref=bad)
    message = str(caught.value)
    assert f"its tests check failed in release {outcome.release.id}" in message
    assert "`conveyor deploy --env test`" in message


def test_a_release_that_does_not_start_changes_nothing(services, runtime, upload):
    good = upload("1")
    deploy(services, "hello", good, "dev", "ana")
    broken = upload("2")
    runtime.failing_starts.add(broken)
    outcome = deploy(services, "hello", broken, "dev", "ana")
    assert not outcome.live and "did not start" in outcome.message
    assert live(services, "dev").bundle_id == good
    assert runtime.routes[("hello", "dev")] == live(services, "dev").id


def test_a_failed_route_swap_rolls_the_live_pointer_back(services, runtime, upload):
    good = upload("1")
    first = deploy(services, "hello", good, "dev", "ana")
    runtime.failing_routes.add(("hello", "dev"))
    second = deploy(services, "hello", upload("2"), "dev", "ana")
    assert not second.live
    assert live(services, "dev").id == first.release.id
    assert runtime.routes[("hello", "dev")] == first.release.id


def test_promote_again_is_a_no_op(services, upload):
    bundle = upload("1")
    deploy(services, "hello", bundle, "test", "ana")
    promote(services, "hello", "ana", to="prod")
    again = promote(services, "hello", "ana", to="prod")
    assert isinstance(again, str) and "already live in prod" in again


def test_approvals_gate_prod(services, upload):
    with services.store.transaction() as connection:
        catalog.save_environments(
            connection,
            [
                Environment(
                    "prod",
                    2,
                    8703,
                    policy=Policy(False, "test", approvals=1, approver_not_deployer=True),
                )
            ],
        )
    for person in ("ana", "bob", "cleo", "dan"):
        add_user(services, person, [Grant("prod", Role.APPROVER)], admin=False, actor="root")
    bundle = upload("1", by="cleo")
    deploy(services, "hello", bundle, "test", "dan")
    with pytest.raises(PolicyViolation, match="prod requires 1 approval"):
        promote(services, "hello", "ana", to="prod")
    # Who uploaded it, who released it to test and who promotes it now: none of them counts.
    for person in ("cleo", "dan", "ana"):
        approve(services, "hello", "prod", None, person)
    with pytest.raises(PolicyViolation, match="approvals by ana, cleo, dan, who deployed it"):
        promote(services, "hello", "ana", to="prod")
    approve(services, "hello", "prod", bundle[:8], "bob", "looks good")
    assert promote(services, "hello", "ana", to="prod").live


def test_approvals_count_only_while_their_users_are_approvers_there(services, upload):
    with services.store.transaction() as connection:
        catalog.save_environments(
            connection, [Environment("prod", 2, 8703, policy=Policy(False, "test", approvals=1))]
        )
    add_user(services, "bob", [Grant("prod", Role.APPROVER)], admin=False, actor="root")
    add_user(services, "eve", [Grant("test", Role.APPROVER)], admin=False, actor="root")
    bundle = upload("1")
    deploy(services, "hello", bundle, "test", "ana")
    approve(services, "hello", "prod", None, "eve")  # the API would refuse her (403)
    with pytest.raises(PolicyViolation, match="eve, who is not an approver in prod now"):
        promote(services, "hello", "ana", to="prod")
    approve(services, "hello", "prod", None, "bob")
    revoke(services, "bob", Grant("prod", Role.APPROVER), admin=False, actor="root")
    with pytest.raises(PolicyViolation, match="bob, eve, who are not an approver"):
        promote(services, "hello", "ana", to="prod")
    grant(services, "bob", Grant("prod", Role.APPROVER), admin=False, actor="root")
    add_user(services, "root", [], admin=True, actor="setup")
    disable(services, "bob", actor="root")
    with pytest.raises(PolicyViolation, match="bob, eve, who are not an approver"):
        promote(services, "hello", "ana", to="prod")


def test_a_later_failing_release_in_test_takes_the_verification_back(services, runtime, upload):
    bundle = upload("1", checks="checks: {tests: pytest}\n")
    deploy(services, "hello", bundle, "test", "ana")
    deploy(services, "hello", upload("2"), "test", "ana")
    runtime.failing_checks[bundle] = {CheckKind.TESTS}  # e.g. the data it tests changed
    again = deploy(services, "hello", bundle, "test", "ana")
    assert not again.live
    with pytest.raises(PolicyViolation) as caught:
        promote(services, "hello", "ana", to="prod", bundle_ref=bundle)
    assert f"its tests check failed in release {again.release.id}" in str(caught.value)
    runtime.failing_checks.pop(bundle)
    assert deploy(services, "hello", bundle, "test", "ana").live
    assert promote(services, "hello", "ana", to="prod", bundle_ref=bundle).live


def test_rollback_returns_to_the_previous_live_bundle(services, runtime, upload):
    first, second = upload("1"), upload("2")
    deploy(services, "hello", first, "dev", "ana")
    deploy(services, "hello", second, "dev", "ana")
    outcome = rollback(services, "hello", "dev", "ana")
    assert outcome.live
    assert live(services, "dev").bundle_id == first
    assert outcome.release.kind.value == "rollback"


def test_rollback_only_to_bundles_live_there_before(services, runtime, upload):
    from conveyor.errors import InvalidInput

    deploy(services, "hello", upload("1"), "dev", "ana")
    with pytest.raises(NotFound, match="no earlier live release in dev"):
        rollback(services, "hello", "dev", "ana")
    elsewhere = deploy(services, "hello", upload("2"), "test", "ana")
    with pytest.raises(InvalidInput, match="is of hello in test, not of hello in dev"):
        rollback(services, "hello", "dev", "ana", to_release=elsewhere.release.id)
    broken = upload("3")
    runtime.failing_starts.add(broken)
    failed = deploy(services, "hello", broken, "dev", "ana")
    with pytest.raises(PolicyViolation, match="was never live in dev"):
        rollback(services, "hello", "dev", "ana", to_release=failed.release.id)


def test_one_operation_at_a_time_per_app_and_environment(services, upload):
    bundle = upload("1")
    from conveyor.domain.operations import OperationKind

    held = operations.start_operation(
        services.store.engine, OperationKind.DEPLOY, "hello", "dev", "bob"
    )
    with pytest.raises(OperationInProgress, match=f"operation {held.id}"):
        deploy(services, "hello", bundle, "dev", "ana")


def test_every_step_is_logged_and_every_change_audited(services, upload):
    outcome = deploy(services, "hello", upload("1"), "dev", "ana")
    lines = [
        line for _, _, line in operations.log_lines(services.store.engine, outcome.operation_id)
    ]
    assert any("starting (nothing is live yet)" in line for line in lines)
    assert any("check health: passed" in line for line in lines)
    assert any(f"release {outcome.release.id} is live" in line for line in lines)
    with services.store.transaction() as connection:
        actions = [e.action for e in audit.events(connection)]
        assert audit.verify(connection).problems == []
    assert actions == ["bundle.upload", "release.deploy", "release.live"]


def test_unknown_app_and_environment(services, upload):
    with pytest.raises(NotFound, match="there is no app 'nope'"):
        deploy(services, "nope", "abcdef", "dev", "ana")
    bundle = upload("1")
    with pytest.raises(NotFound, match="there is no environment 'staging'"):
        deploy(services, "hello", bundle, "staging", "ana")


def test_each_step_duration_is_recorded_on_the_release(services, upload):
    deploy(services, "hello", upload("1"), "dev", "ana")
    outcome = deploy(services, "hello", upload("2"), "dev", "ana")
    names = [name for name, _ in outcome.release.steps]
    assert names == ["start", "checks", "switch", "drain"]
    assert all(seconds >= 0 for _, seconds in outcome.release.steps)


def test_a_corrupt_blob_fails_the_release_and_frees_the_operation(services, runtime, upload):
    from conveyor.domain.operations import OperationState
    from conveyor.errors import IntegrityError

    good = upload("1")
    deploy(services, "hello", good, "dev", "ana")
    corrupt = upload("2")
    with services.store.transaction() as connection:
        blob = catalog.get_bundle(connection, "hello", corrupt)["blob"]
    path = services.store.blobs.path_of(blob)
    path.chmod(0o644)
    path.write_bytes(b"not the bundle")
    with pytest.raises(IntegrityError):
        deploy(services, "hello", corrupt, "dev", "ana")
    with services.store.transaction() as connection:
        failed = releases.history(connection, "hello", "dev", limit=1)[0]
    assert failed.state is ReleaseState.FAILED and failed.bundle_id == corrupt
    assert live(services, "dev").bundle_id == good
    held = operations.get_operation(services.store.engine, 2)
    assert held.state is OperationState.FAILED
    assert deploy(services, "hello", good, "dev", "ana")  # the operation slot is free again
