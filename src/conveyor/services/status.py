"""What runs where: the status table (apps x environments), an app's history, and the diff of
one app between two environments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.domain.policy import bundle_alias
from conveyor.domain.releases import Release
from conveyor.errors import NotFound
from conveyor.services.context import Services
from conveyor.services.variables import MASK
from conveyor.storage import catalog, releases
from conveyor.storage import variables as stored


@dataclass(frozen=True)
class Cell:
    """One app in one environment."""

    app: str
    environment: str
    release: int
    bundle: str  # alias
    bundle_id: str
    state: str
    since: str  # when the release was created
    verified: bool
    approved_by: tuple[str, ...]
    degraded: str | None = None


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
                        bundle=bundle_alias(live.bundle_id),
                        bundle_id=live.bundle_id,
                        state=str(live.state),
                        since=live.created_at,
                        verified=live.verified,
                        approved_by=tuple(
                            sorted(a.by for a in approvals if a.environment == environment.name)
                        ),
                        degraded=services.runtime.degraded(live.id),
                    )
                )
    return Status(
        [{"name": e.name, "port": e.port, "position": e.position} for e in environments],
        apps,
        cells,
    )


def history(
    services: Services, app: str, environment: str | None = None, limit: int = 50
) -> list[Release]:
    with services.store.transaction() as connection:
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}; `conveyor status` lists the apps")
        if environment is not None:
            catalog.get_environment(connection, environment)
        return releases.history(connection, app, environment, limit=limit)


@dataclass(frozen=True)
class Difference:
    """One aspect of an app compared between two environments."""

    aspect: str  # bundle, python, lock, type, entrypoint, variable NAME
    left: str | None
    right: str | None

    @property
    def same(self) -> bool:
        return self.left == self.right


def diff(services: Services, app: str, left: str, right: str) -> list[Difference]:
    """What differs in ``app`` between two environments, and what is the same: bundle, the
    runtime's inputs (python requirement, lock), the type and entrypoint, and every variable
    (secret values masked; a secret that differs shows as changed without its value)."""
    with services.store.transaction() as connection:
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}; `conveyor status` lists the apps")
        sides = []
        for name in (left, right):
            catalog.get_environment(connection, name)
            live = releases.live_release(connection, app, name)
            bundle = catalog.get_bundle(connection, app, live.bundle_id) if live else None
            sides.append((live, bundle, stored.variables_of(connection, app, name)))
    differences = [
        Difference(
            "bundle",
            *(bundle_alias(live.bundle_id) if live else None for live, _, _ in sides),
        )
    ]
    for aspect in ("type", "entrypoint", "python"):
        differences.append(
            Difference(aspect, *(str(b["manifest"][aspect]) if b else None for _, b, _ in sides))
        )
    differences.append(
        Difference(
            "lock",
            *(_lock_summary(b["manifest"]) if b else None for _, b, _ in sides),
        )
    )
    left_vars = {v.name: v for v in sides[0][2]}
    right_vars = {v.name: v for v in sides[1][2]}
    for name in sorted(left_vars.keys() | right_vars.keys()):
        a, b = left_vars.get(name), right_vars.get(name)
        if (a and a.secret) or (b and b.secret):
            same = a is not None and b is not None and a.value == b.value
            shown_a = MASK if a else None
            shown_b = (MASK if same else MASK + " (different)") if b else None
            differences.append(Difference(f"variable {name}", shown_a, shown_b))
        else:
            differences.append(
                Difference(f"variable {name}", a.value if a else None, b.value if b else None)
            )
    return differences


def _lock_summary(manifest: dict[str, Any]) -> str:
    lock = manifest.get("lock") or {}
    digest = lock.get("sha256")
    packages = lock.get("packages", 0)
    return f"{packages} packages" + (f", sha256 {str(digest)[:12]}" if digest else "")
