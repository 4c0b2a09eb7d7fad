"""Variables and secrets, status, history, diff and reconcile, on a real store (SQLite and
PostgreSQL) with the in-memory runtime."""

from __future__ import annotations

import pytest

from conveyor.domain.operations import OperationKind, OperationState
from conveyor.domain.releases import ReleaseKind, ReleaseState
from conveyor.errors import InvalidInput, NotFound
from conveyor.services.pipeline import approve, deploy, promote
from conveyor.services.reconcile import reconcile
from conveyor.services.status import diff, history, status
from conveyor.services.variables import MASK, list_variables, set_variable, unset_variable
from conveyor.storage import audit, operations, releases


def test_variables_reach_the_next_release_and_secrets_stay_masked(services, runtime, upload):
    first = upload("1")
    deploy(services, "hello", first, "dev", "ana")
    set_variable(services, "hello", "dev", "REGION", "west", secret=False, actor="ana")
    set_variable(services, "hello", "dev", "API_KEY", "s3cret", secret=True, actor="ana")
    listed = {v.name: v for v in list_variables(services, "hello", "dev")}
    assert listed["REGION"].value == "west"
    assert listed["API_KEY"].value == MASK and listed["API_KEY"].secret
    outcome = deploy(services, "hello", upload("2"), "dev", "ana")
    assert runtime.plans[outcome.release.id].variables == {"REGION": "west", "API_KEY": "s3cret"}
    with services.store.transaction() as connection:
        events = audit.events(connection)
    assert all("s3cret" not in str(e.details) for e in events)
    unset_variable(services, "hello", "dev", "REGION", "ana")
    assert [v.name for v in list_variables(services, "hello", "dev")] == ["API_KEY"]
    with pytest.raises(NotFound, match="has no variable REGION"):
        unset_variable(services, "hello", "dev", "REGION", "ana")


@pytest.mark.parametrize("name", ["PORT", "CONVEYOR_ENV", "R_CONFIG_ACTIVE", "1ABC", "A-B", ""])
def test_reserved_and_malformed_variable_names_are_refused(services, upload, name):
    deploy(services, "hello", upload("1"), "dev", "ana")
    with pytest.raises(InvalidInput):
        set_variable(services, "hello", "dev", name, "x", secret=False, actor="ana")


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "DYLD_INSERT_LIBRARIES",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "PYTHONWARNINGS",
        "PATH",
        "HOME",
        "CONVEYOR_DATA",
        "R_CONFIG_ACTIVE",
        "BASH_ENV",
    ],
)
def test_names_that_change_which_code_runs_are_refused_with_the_reason(services, upload, name):
    """Setting these in Prod would change Prod's code without a promotion."""
    deploy(services, "hello", upload("1"), "dev", "ana")
    with pytest.raises(InvalidInput) as refused:
        set_variable(services, "hello", "prod", name, "/tmp/x", secret=False, actor="ana")
    assert name in str(refused.value)
    assert "changes which code" in str(refused.value) or "set by Conveyor" in str(refused.value)


def test_python_variables_on_the_allow_list_may_be_set(services, upload):
    deploy(services, "hello", upload("1"), "dev", "ana")
    set_variable(services, "hello", "dev", "PYTHONIOENCODING", "utf-8", secret=False, actor="a")
    assert [v.name for v in list_variables(services, "hello", "dev")] == ["PYTHONIOENCODING"]


def test_a_variable_stored_before_its_name_was_refused_is_left_out(services, runtime, upload):
    """A database from an older version may hold one; the release starts without it and the
    operation log says why."""
    from conveyor.storage import variables as stored

    deploy(services, "hello", upload("1"), "dev", "ana")
    with services.store.transaction() as connection:
        stored.set_variable(
            connection, "hello", "dev", "LD_PRELOAD", "/x.so", secret=False, by="old"
        )
    outcome = deploy(services, "hello", upload("2"), "dev", "ana")
    assert "LD_PRELOAD" not in runtime.plans[outcome.release.id].variables
    lines = [
        line for _, _, line in operations.log_lines(services.store.engine, outcome.operation_id, 0)
    ]
    assert any("variable LD_PRELOAD is left out" in line for line in lines)


def test_status_history_and_diff(services, runtime, upload):
    one, two = upload("1"), upload("2")
    deploy(services, "hello", one, "test", "ana")
    promote(services, "hello", "ana", to="prod")
    approve(services, "hello", "prod", one, "bob")
    deploy(services, "hello", two, "test", "ana")
    found = status(services)
    cells = {c.environment: c for c in found.cells}
    assert set(cells) == {"test", "prod"} and found.apps == ["hello"]
    assert cells["prod"].bundle == one and cells["prod"].approved_by == ("bob",)
    assert cells["test"].bundle == two and cells["test"].verified
    runtime.degraded_releases[cells["test"].release] = "worker 0 exited 6 times in 60 s"
    assert {c.environment: c.degraded for c in status(services).cells}["test"]
    assert [r.kind for r in history(services, "hello", "test")] == [
        ReleaseKind.DEPLOY,
        ReleaseKind.DEPLOY,
    ]
    set_variable(services, "hello", "prod", "TOKEN", "a", secret=True, actor="ana")
    set_variable(services, "hello", "test", "TOKEN", "b", secret=True, actor="ana")
    differences = {d.aspect: d for d in diff(services, "hello", "test", "prod")}
    assert not differences["bundle"].same
    assert differences["type"].same and differences["python"].same
    assert differences["runtime"].same  # two bundles with one lock run on one runtime
    assert (differences["files"].same, differences["file app.py"].same) == (False, False)
    assert differences["files"].right.endswith("(1 differ)")
    assert "file conveyor.yml" not in differences  # the same in both
    token = differences["variable TOKEN"]
    assert (token.left, token.right, token.same) == (MASK, MASK, None)  # not compared
    as_admin = {d.aspect: d for d in diff(services, "hello", "test", "prod", compare_secrets=True)}
    assert (as_admin["variable TOKEN"].left, as_admin["variable TOKEN"].same) == (MASK, False)
    with pytest.raises(NotFound):
        status(services, "nope")


def test_a_guess_of_a_secret_cannot_be_confirmed_by_diffing(services, upload):
    """Someone who may set Dev's variables sets their guess of Prod's secret in Dev, as a
    secret or in plain, and diffs: the answer says the secret is set, nothing about its value."""
    bundle = upload("1")
    deploy(services, "hello", bundle, "dev", "ana")
    deploy(services, "hello", bundle, "test", "ana")
    set_variable(services, "hello", "test", "DB_PASSWORD", "hunter2", secret=True, actor="ops")
    for secret in (True, False):
        set_variable(services, "hello", "dev", "DB_PASSWORD", "hunter2", secret=secret, actor="x")
        [found] = [d for d in diff(services, "hello", "dev", "test") if "DB_PASS" in d.aspect]
        assert found.same is None and found.right == MASK
        assert "hunter2" not in str(found)
    unset_variable(services, "hello", "dev", "DB_PASSWORD", "x")
    [found] = [d for d in diff(services, "hello", "dev", "test") if "DB_PASS" in d.aspect]
    assert (found.left, found.right, found.same) == (None, MASK, False)  # set or unset: known


def test_reconcile_serves_live_releases_and_settles_what_was_in_flight(services, runtime, upload):
    live = deploy(services, "hello", upload("1"), "dev", "ana").release
    second = upload("2")
    # What a killed server leaves: an operation still running and a release half started.
    held = operations.start_operation(
        services.store.engine, OperationKind.DEPLOY, "hello", "dev", "ana"
    )
    with services.store.transaction() as connection:
        half = releases.create_release(
            connection,
            app="hello",
            environment="dev",
            bundle_id=second,
            kind=ReleaseKind.DEPLOY,
            created_by="ana",
        )
        releases.transition(connection, half.id, ReleaseState.STARTING)
    runtime.running.clear()
    runtime.routes.clear()  # a new process: nothing runs, nothing is routed
    lines: list[str] = []
    report = reconcile(services, lines.append)
    assert report.serving == [live.id] and report.interrupted == [held.id]
    assert report.failed == [half.id]
    assert runtime.routes[("hello", "dev")] == live.id
    assert operations.get_operation(services.store.engine, held.id).state is (
        OperationState.INTERRUPTED
    )
    with services.store.transaction() as connection:
        settled = releases.get_release(connection, half.id)
        assert releases.live_release(connection, "hello", "dev").id == live.id
    assert settled.state is ReleaseState.FAILED
    assert settled.reason == "the server stopped while it was starting"
    assert any("is serving again" in line for line in lines)
    assert reconcile(services, lines.append).serving == [live.id]  # twice changes nothing more


def test_diff_compares_the_configuration_each_environment_resolves(services, tmp_path):
    from conveyor.bundles.build import build_bundle
    from conveyor.services.bundles import register_bundle

    root = tmp_path / "configured"
    root.mkdir()
    (root / "conveyor.yml").write_text("name: hello\ntype: fastapi\n")
    (root / "app.py").write_text("app = None\n")
    (root / "config.yml").write_text(
        "default:\n  url: http://localhost\n  rows: 10\n  password: !env DB_PASSWORD\n"
        "prod:\n  url: https://data.example.com\n"
    )
    built = build_bundle(root, root / "bundle.tar.gz")
    bundle = register_bundle(services, built.archive, built.provenance, "ana").bundle_id
    deploy(services, "hello", bundle, "test", "ana")
    promote(services, "hello", "ana", to="prod")
    differences = {d.aspect: d for d in diff(services, "hello", "test", "prod")}
    url = differences["config url"]
    assert (url.left, url.right, url.same) == (
        "http://localhost",
        "https://data.example.com",
        False,
    )
    assert differences["config rows"].same and differences["bundle"].same
    password = differences["config password"]
    assert (password.left, password.same) == ("!env DB_PASSWORD", True)
