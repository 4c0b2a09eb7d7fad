"""The retention plan from facts alone: what gc keeps (live, on their way, the last N that were
live, what is awaiting promotion or approval, what a running operation's app holds, the served
and running runs) and what it removes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.domain.retention import (
    BundleFact,
    Group,
    Inventory,
    LogFact,
    ReleaseFact,
    RetentionSettings,
    RunFact,
    RuntimeFact,
    plan,
    show_bytes,
)
from conveyor.errors import InvalidInput

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = "2026-01-01T00:00:00+00:00"
RECENT = "2026-05-31T00:00:00+00:00"


def bundle(name: str, lock: str = "lock-a", created: str = OLD) -> BundleFact:
    return BundleFact(name, "hello", f"blob-{name}", 100, lock, created, False, True)


def release(
    number: int,
    name: str,
    state: str = "retired",
    env: str = "dev",
    ok: bool = True,
    created: str = OLD,
):
    return ReleaseFact(number, "hello", env, name, state, ok, created)


def removed(found, group: Group) -> list:
    return [item.key for item in found.of(group)]


def seven_deploys(**extra) -> Inventory:
    """b1..b7 deployed to dev in turn; b7 live."""
    releases = [release(n, f"b{n}", "live" if n == 7 else "retired") for n in range(1, 8)]
    facts = {
        "releases": tuple(releases),
        "bundles": tuple(bundle(f"b{n}", "lock-a" if n > 2 else "lock-old") for n in range(1, 8)),
        "runtimes": (RuntimeFact("r-new", "lock-a", 50), RuntimeFact("r-old", "lock-old", 70)),
    }
    return Inventory(**{**facts, **extra})


def test_the_live_release_and_the_last_n_are_kept_with_their_bundles_and_runtimes():
    found = plan(seven_deploys(), RetentionSettings(keep_releases=2), NOW)
    assert found.kept_releases == {7, 6, 5}
    assert removed(found, Group.RELEASES) == [1, 2, 3, 4]
    assert removed(found, Group.BUNDLES) == ["b1", "b2", "b3", "b4"]
    assert removed(found, Group.RUNTIMES) == ["r-old"]  # only b1 and b2 used lock-old
    assert found.size == 4 * 100 + 70
    everything = plan(seven_deploys(), RetentionSettings(keep_releases=6), NOW)
    assert everything.items == ()


def test_failed_releases_are_no_rollback_targets_and_releases_on_their_way_are_kept():
    facts = Inventory(
        releases=(
            release(1, "b1"),
            release(2, "b2", "live"),
            release(3, "b3", "failed", ok=False),
            release(4, "b4", "starting"),
        ),
        bundles=tuple(bundle(f"b{n}") for n in range(1, 5)),
    )
    found = plan(facts, RetentionSettings(keep_releases=1), NOW)
    assert found.kept_releases == {1, 2, 4}
    assert removed(found, Group.BUNDLES) == ["b3"]


def test_a_running_operation_or_run_holds_everything_of_its_app_there():
    found = plan(seven_deploys(busy=frozenset({("hello", "dev")})), RetentionSettings(1), NOW)
    assert found.items == ()


def test_running_releases_are_kept_whatever_their_state():
    found = plan(seven_deploys(running=frozenset({1})), RetentionSettings(keep_releases=2), NOW)
    assert removed(found, Group.RELEASES) == [2, 3, 4]
    assert removed(found, Group.RUNTIMES) == []  # release 1 still runs on lock-old's runtime


def test_bundles_awaiting_promotion_or_approved_for_it_are_kept():
    # dev: b1..b4 in turn (b4 live); test took b1 (release 2) from dev.
    facts = Inventory(
        releases=(
            release(1, "b1", "retired"),
            release(2, "b1", "live", env="test"),
            release(3, "b2"),
            release(4, "b3"),
            release(5, "b4", "live"),
        ),
        bundles=tuple(bundle(f"b{n}") for n in range(1, 5)),
        promotes_from={"test": "dev", "prod": "test"},
    )
    keep_one = RetentionSettings(keep_releases=1)
    found = plan(facts, keep_one, NOW)
    # b4 awaits promotion to test, b1 to prod (both live); b3 is dev's rollback target.
    assert {"b4", "b1", "b3"} <= found.kept_bundles
    assert removed(found, Group.BUNDLES) == ["b2"]
    # Approved for test, b2 awaits its promotion there.
    approved = Inventory(**{**facts.__dict__, "approvals": (("b2", "test"),)})
    assert removed(plan(approved, keep_one, NOW), Group.BUNDLES) == []


def test_an_approved_bundle_not_yet_live_there_is_kept():
    facts = seven_deploys(approvals=(("b1", "prod"), ("b2", "dev")))
    found = plan(facts, RetentionSettings(keep_releases=2), NOW)
    # b1 waits for prod; b2's approval for dev is spent (it was live there).
    assert removed(found, Group.BUNDLES) == ["b2", "b3", "b4"]
    assert removed(found, Group.RUNTIMES) == []  # b1 keeps lock-old's runtime


def test_bundles_never_released_wait_for_their_first_release_for_the_log_age():
    facts = Inventory(bundles=(bundle("fresh", created=RECENT), bundle("stale", created=OLD)))
    assert removed(plan(facts, RetentionSettings(), NOW), Group.BUNDLES) == ["stale"]


def test_a_blob_shared_with_a_kept_bundle_stays_and_removed_bundles_are_not_listed_again():
    shared = BundleFact("b1", "hello", "blob-b7", 100, "lock-a", OLD, False, True)
    gone = BundleFact("b2", "hello", "blob-b2", 100, "lock-a", OLD, True, False)
    facts = Inventory(
        releases=seven_deploys().releases,
        bundles=(shared, gone, *seven_deploys().bundles[2:]),
    )
    found = plan(facts, RetentionSettings(keep_releases=2), NOW)
    assert removed(found, Group.BUNDLES) == ["b3", "b4"]
    assert removed(found, Group.RELEASES) == [3, 4]


def test_left_over_release_directories_go_unless_the_release_is_kept_or_running():
    facts = seven_deploys(release_dirs={1: 10, 7: 10, 99: 5}, running=frozenset({7}))
    found = plan(facts, RetentionSettings(keep_releases=5), NOW)
    assert removed(found, Group.RELEASES) == [1, 99]
    assert sum(item.size for item in found.of(Group.RELEASES)) == 10 + 5


def test_replaced_runtimes_and_runtimes_of_no_kept_bundle_go():
    facts = seven_deploys(runtimes=(RuntimeFact(".retired-x", None, 9), RuntimeFact("r", "a", 1)))
    found = plan(facts, RetentionSettings(keep_releases=6), NOW)
    assert removed(found, Group.RUNTIMES) == [".retired-x", "r"]


def test_logs_older_than_the_age_go_except_a_running_release_s():
    facts = Inventory(
        logs=(
            LogFact("operation", 1, OLD, 300, 12),
            LogFact("operation", 2, RECENT, 300, 12),
            LogFact("run", 3, OLD, 40, 2),
            LogFact("release", 4, OLD, 1000),
            LogFact("release", 5, OLD, 1000),
        ),
        running=frozenset({5}),
    )
    found = plan(facts, RetentionSettings(), NOW)
    assert removed(found, Group.LOGS) == [("operation", 1), ("run", 3), ("release", 4)]
    hour = RetentionSettings(keep_logs=3600)
    assert len(plan(facts, hour, NOW).of(Group.LOGS)) == 4


def test_run_outputs_beyond_the_last_n_go_but_never_the_served_or_a_running_one():
    runs = tuple(RunFact(n, "report", "test", "succeeded", 10) for n in range(1, 8))
    facts = Inventory(
        runs=(*runs, RunFact(8, "report", "test", "failed", None)),
        pointers=((40, 2),),
        running=frozenset({40}),
    )
    found = plan(facts, RetentionSettings(keep_runs=3), NOW)
    assert removed(found, Group.RUN_OUTPUTS) == [5, 4, 3, 1]  # 8, 7, 6 kept; 2 served
    assert found.stale_pointers == frozenset()
    busy = Inventory(runs=runs, busy=frozenset({("report", "test")}))
    assert plan(busy, RetentionSettings(keep_runs=1), NOW).items == ()


def test_settings_refuse_keeping_nothing_and_sizes_read_well():
    for bad in ({"keep_releases": 0}, {"keep_runs": 0}, {"keep_logs": 60}):
        with pytest.raises(InvalidInput):
            RetentionSettings(**bad)
    assert [show_bytes(n) for n in (0, 812, 4300, 17 * 2**20)] == [
        "0 B",
        "812 B",
        "4.2 KiB",
        "17.0 MiB",
    ]


def test_only_pointers_of_running_or_live_releases_hold_a_run_output_the_rest_are_stale():
    runs = tuple(RunFact(n, "report", "test", "succeeded", 10) for n in range(1, 6))
    facts = Inventory(
        releases=(
            ReleaseFact(10, "report", "test", "b1", "retired", True),
            ReleaseFact(11, "report", "test", "b2", "retired", True),
            ReleaseFact(12, "report", "test", "b3", "live", True),
        ),
        bundles=tuple(
            BundleFact(f"b{n}", "report", f"blob-{n}", 1, "l", OLD, False, True) for n in (1, 2, 3)
        ),
        runs=runs,
        # Each release served the run that was current while it ran; 10 and 11 no longer run.
        pointers=((10, 1), (11, 2), (12, 3)),
        running=frozenset({12}),
    )
    found = plan(facts, RetentionSettings(keep_runs=1), NOW)
    assert removed(found, Group.RUN_OUTPUTS) == [4, 2, 1]  # 5 latest, 3 served by release 12
    assert found.stale_pointers == {10, 11}
    # After a restart the live release is not running yet: its pointer still counts.
    restarted = Inventory(**{**facts.__dict__, "running": frozenset()})
    assert plan(restarted, RetentionSettings(keep_runs=1), NOW).stale_pointers == {10, 11}
    assert 3 not in removed(plan(restarted, RetentionSettings(keep_runs=1), NOW), Group.RUN_OUTPUTS)


def test_a_bundle_whose_releases_all_failed_is_kept_like_a_never_released_one():
    # b2 was uploaded long ago and failed (a missing variable) just now; b3 failed long ago.
    facts = Inventory(
        releases=(
            release(1, "b1", "live"),
            release(2, "b2", "failed", ok=False, created=RECENT),
            release(3, "b3", "failed", ok=False, created=OLD),
        ),
        bundles=(bundle("b1"), bundle("b2"), bundle("b3")),
    )
    found = plan(facts, RetentionSettings(keep_releases=1), NOW)
    assert "b2" in found.kept_bundles
    assert removed(found, Group.BUNDLES) == ["b3"]
    # Fresh from its upload, a bundle whose only release failed is kept too.
    fresh = Inventory(
        releases=(release(1, "b1", "live"), release(2, "b4", "failed", ok=False)),
        bundles=(bundle("b1"), bundle("b4", created=RECENT)),
    )
    assert removed(plan(fresh, RetentionSettings(keep_releases=1), NOW), Group.BUNDLES) == []


def test_rollback_targets_are_distinct_bundles_other_than_the_live_one():
    # prod: A, then B deployed and redeployed six times (variables, repair); B live.
    releases = (
        release(1, "A", env="prod"),
        *(release(n, "B", env="prod") for n in range(2, 8)),
        release(8, "B", "live", env="prod"),
    )
    facts = Inventory(releases=releases, bundles=(bundle("A"), bundle("B")))
    found = plan(facts, RetentionSettings(keep_releases=5), NOW)
    assert {"A", "B"} <= found.kept_bundles and 1 in found.kept_releases
    assert removed(found, Group.BUNDLES) == []
    # Several bundles: the newest retired release of each of the last N distinct bundles.
    mixed = Inventory(
        releases=(
            release(1, "A"),
            release(2, "B"),
            release(3, "C"),
            release(4, "C"),
            release(5, "B"),
            release(6, "D"),
            release(7, "D"),
            release(8, "D", "live"),
        ),
        bundles=tuple(bundle(name) for name in "ABCD"),
    )
    found = plan(mixed, RetentionSettings(keep_releases=2), NOW)
    assert found.kept_releases == {8, 5, 4}  # D live; B (release 5) and C (release 4)
    assert removed(found, Group.BUNDLES) == ["A"]
