"""What runs where: the status table (apps x environments), an app's history, and the diff of
one app between two environments."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.bundles.archive import extract
from conveyor.config import inspection
from conveyor.domain.environments import DataConnection
from conveyor.domain.policy import bundle_alias
from conveyor.domain.releases import Release
from conveyor.errors import ConfigError, NotFound
from conveyor.services import runs
from conveyor.services.context import Services
from conveyor.services.variables import MASK
from conveyor.storage import catalog, releases
from conveyor.storage import variables as stored

_CREDENTIALS = re.compile(r"://[^/@]*@")


@dataclass(frozen=True)
class Cell:
    """One app in one environment."""

    app: str
    environment: str
    release: int
    bundle: str  # the full id, as everywhere else
    alias: str  # its first 10 hex digits
    state: str
    since: str  # when the release was created
    verified: bool
    approved_by: tuple[str, ...]
    degraded: str | None = None
    #: How its processes are isolated, e.g. "bubblewrap, as user 3000002".
    isolation: str | None = None
    #: When its files were last found changed and restored from its bundle, and what changed.
    repaired: str | None = None
    #: Reports and jobs: how the latest run failed ("run 12 failed at ...: why"), else None.
    run_failed: str | None = None
    #: Its processes are stopped after a while without requests; the next one wakes it.
    sleeping: bool = False


@dataclass(frozen=True)
class Status:
    environments: list[dict[str, Any]]  # name, port, position
    apps: list[str]
    cells: list[Cell]


def status(services: Services, app: str | None = None) -> Status:
    with services.store.transaction() as connection:
        environments = catalog.list_environments(connection)
        apps = [app] if app else catalog.list_apps(connection)
        if app and not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}; `conveyor status` lists the apps")
        cells = []
        for name in apps:
            for environment in environments:
                live = releases.live_release(connection, name, environment.name)
                if live is None:
                    continue
                approvals = catalog.approvals_of(connection, live.bundle_id)
                cells.append(
                    Cell(
                        app=name,
                        environment=environment.name,
                        release=live.id,
                        bundle=live.bundle_id,
                        alias=bundle_alias(live.bundle_id),
                        state=str(live.state),
                        since=live.created_at,
                        verified=live.verified,
                        approved_by=tuple(
                            sorted(a.by for a in approvals if a.environment == environment.name)
                        ),
                        degraded=services.runtime.degraded(live.id),
                        isolation=services.runtime.isolation(live.id),
                        repaired=services.runtime.repaired(live.id),
                        run_failed=runs.failure_note(connection, name, environment.name),
                        sleeping=services.runtime.asleep(live.id),
                    )
                )
    return Status(
        [
            {
                "name": e.name,
                "port": e.port,
                "position": e.position,
                "isolation": e.isolation,
                # Read-only connections used without proof that they cannot write.
                "unverified": [c.name for c in e.data if c.read_only and not c.verified],
            }
            for e in environments
        ],
        apps,
        cells,
    )


def history(
    services: Services,
    app: str,
    environment: str | None = None,
    limit: int = 50,
    within: Iterable[str] | None = None,
) -> list[Release]:
    """The app's releases, newest first, in ``environment`` or in any of ``within``."""
    with services.store.transaction() as connection:
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}; `conveyor status` lists the apps")
        if environment is not None:
            catalog.get_environment(connection, environment)
        return releases.history(connection, app, environment, limit=limit, within=within)


@dataclass(frozen=True)
class Difference:
    """One aspect of an app compared between two environments."""

    aspect: str  # bundle, python, lock, type, entrypoint, config KEY, variable NAME
    left: str | None
    right: str | None
    #: Decided on the values themselves. None: not compared, because both sides hold a secret
    #: and the asker may only learn whether it is set (see ``diff``).
    same: bool | None


def diff(
    services: Services, app: str, left: str, right: str, *, compare_secrets: bool = False
) -> list[Difference]:
    """What differs in ``app`` between two environments, and what is the same: bundle, the
    runtime's inputs (python requirement, lock) and the runtime it runs on (id, Python,
    platform), the environments' data connections (mode, role, where; never credentials),
    the type and entrypoint, every key of the bundle's config.yml as resolved for each
    environment, and every variable.

    Secret values are never shown. Whether two secrets are equal is told only with
    ``compare_secrets`` (admins): otherwise a secret shows as set or unset and ``same`` is
    None, so nobody confirms a guess of Prod's secret by setting it in Dev and diffing."""
    with services.store.transaction() as connection:
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}; `conveyor status` lists the apps")
        sides = []
        config_names = []
        environments = []
        for name in (left, right):
            environments.append(catalog.get_environment(connection, name))
            config_names.append(environments[-1].config_name)
            live = releases.live_release(connection, app, name)
            bundle = catalog.get_bundle(connection, app, live.bundle_id) if live else None
            sides.append(
                (
                    live,
                    bundle,
                    stored.variables_of(connection, app, name, reveal=compare_secrets),
                )
            )
    differences = [
        _compare(
            "bundle", *(bundle_alias(live.bundle_id) if live else None for live, _, _ in sides)
        )
    ]
    for aspect in ("type", "entrypoint", "python"):
        differences.append(
            _compare(aspect, *(str(b["manifest"][aspect]) if b else None for _, b, _ in sides))
        )
    differences.append(
        _compare("lock", *(_lock_summary(b["manifest"]) if b else None for _, b, _ in sides))
    )
    differences += _file_differences(*(b["manifest"] if b else None for _, b, _ in sides))
    differences.append(
        _compare(
            "runtime",
            *(services.runtime.runtime_of(live.id) if live else None for live, _, _ in sides),
        )
    )
    connections = [{c.name: c for c in e.data} for e in environments]
    for name in sorted(connections[0].keys() | connections[1].keys()):
        differences.append(
            _compare(f"data {name}", *(_connection_summary(c.get(name)) for c in connections))
        )

    configs = [
        _config_of(services, bundle, name) if bundle else {}
        for (_, bundle, _), name in zip(sides, config_names, strict=True)
    ]
    for key in sorted(configs[0].keys() | configs[1].keys()):
        a, b = configs[0].get(key), configs[1].get(key)
        secret = a is not None and b is not None and (a[2] or b[2])
        differences.append(
            Difference(
                f"config {key}",
                a[0] if a else None,
                b[0] if b else None,
                same=None
                if secret and not compare_secrets
                else (a[1] if a else None) == (b[1] if b else None),
            )
        )
    left_vars = {v.name: v for v in sides[0][2]}
    right_vars = {v.name: v for v in sides[1][2]}
    for name in sorted(left_vars.keys() | right_vars.keys()):
        x, y = left_vars.get(name), right_vars.get(name)
        if (x and x.secret) or (y and y.secret):
            shown = [MASK if v else None for v in (x, y)]
            if x is None or y is None:
                same: bool | None = False  # set on one side only: that much anyone may know
            else:
                same = x.value == y.value if compare_secrets else None
        else:
            shown = [v.value if v else None for v in (x, y)]
            same = shown[0] == shown[1]
        differences.append(Difference(f"variable {name}", shown[0], shown[1], same=same))
    return differences


#: How many changed files a diff names one by one (the count covers them all).
FILES_SHOWN = 50


def _file_differences(
    left: dict[str, Any] | None, right: dict[str, Any] | None
) -> list[Difference]:
    """A line for the bundles' files, then one per file added, removed or changed (its
    sha256's first 12 characters on each side; a missing side is None)."""
    if left is None or right is None:
        counts = [f"{len(m.get('files', []))} files" if m else None for m in (left, right)]
        return [Difference("files", counts[0], counts[1], same=None)]
    a = {f["path"]: str(f["sha256"]) for f in left.get("files", [])}
    b = {f["path"]: str(f["sha256"]) for f in right.get("files", [])}
    changed = sorted(path for path in a.keys() | b.keys() if a.get(path) != b.get(path))
    right_count = f"{len(b)} files" + (f" ({len(changed)} differ)" if changed else "")
    found = [Difference("files", f"{len(a)} files", right_count, same=not changed)]
    for path in changed[:FILES_SHOWN]:
        before, after = a.get(path), b.get(path)
        found.append(
            Difference(
                f"file {path}",
                before[:12] if before else None,
                after[:12] if after else None,
                same=False,
            )
        )
    return found


def _compare(aspect: str, left: str | None, right: str | None) -> Difference:
    return Difference(aspect, left, right, same=left == right)


def _config_of(
    services: Services, bundle: dict[str, Any], config_name: str
) -> dict[str, tuple[str, str, bool]]:
    """The bundle's config.yml resolved for ``config_name``: key -> (what to show, fingerprint,
    whether it is masked).
    Secrets show masked; `!env` values show the variable they read (the server's environment is
    not the app's, so their values are not looked up)."""
    paths = {f["path"] for f in bundle["manifest"].get("files", [])}
    if "config.yml" not in paths:
        return {}
    archive = services.store.blobs.verified_path(bundle["blob"])
    with tempfile.TemporaryDirectory(prefix="conveyor-diff-") as scratch:
        extract(archive, Path(scratch) / "app", expected_id=bundle["id"])
        try:
            shown = inspection.show(
                env=config_name, file=Path(scratch) / "app" / "config.yml", use_parent=False
            )
        except ConfigError as exc:
            return {"(config.yml)": (f"cannot be read: {exc}", str(exc), False)}
    return {
        entry.key: (
            f"!env {entry.env}" if entry.env else entry.display(),
            entry.fingerprint,
            entry.masked and not entry.env,
        )
        for entry in shown.entries
    }


def _connection_summary(connection: DataConnection | None) -> str | None:
    """Mode, role and where it points: the URL without user or password."""
    if connection is None:
        return None
    where = _CREDENTIALS.sub("://", connection.url)
    role = f" as role {connection.role}" if connection.role else ""
    return f"{connection.mode}{role}: {where}"


def _lock_summary(manifest: dict[str, Any]) -> str:
    lock = manifest.get("lock") or {}
    digest = lock.get("sha256")
    packages = lock.get("packages", 0)
    return f"{packages} packages" + (f", sha256 {str(digest)[:12]}" if digest else "")
