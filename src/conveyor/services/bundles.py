"""Registering an uploaded bundle: verified, stored once by content, recorded once by id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.bundles.archive import verify
from conveyor.services.context import Services
from conveyor.storage import audit, catalog, retention


@dataclass(frozen=True)
class Registered:
    bundle_id: str
    app: str
    new: bool


def register_bundle(
    services: Services, archive: Path, provenance: dict[str, Any], actor: str
) -> Registered:
    """Verify ``archive`` (every entry and hash), store it, and record it with its provenance.
    Registering the same bundle again changes nothing, unless gc removed its blob (or the blob
    is missing): then the archive uploaded now is its blob."""
    opened = verify(archive)
    app = str(opened.manifest["app"])
    size = archive.stat().st_size
    # Not while a gc removes files: it could unlink the blob this upload brings back.
    with services.files.starting():
        with services.store.transaction() as connection:
            found = retention.stored_blob(connection, opened.id)
        intact = found is not None and found[1] is None and services.store.blobs.exists(found[0])
        blob = found[0] if found is not None and intact else services.store.blobs.put_file(archive)
        with services.store.transaction() as connection:
            catalog.ensure_app(connection, app)
            new = catalog.save_bundle(
                connection,
                bundle_id=opened.id,
                app=app,
                blob=blob,
                size=size,
                manifest=opened.manifest,
                provenance=provenance,
                uploaded_by=actor,
            )
            if not new and not intact:
                retention.restore(connection, opened.id, blob, size)  # its blob is back
            if new:
                audit.record(
                    connection,
                    actor,
                    "bundle.upload",
                    f"{app}@{opened.id[:10]}",
                    {"bundle": opened.id, "provenance": provenance},
                )
    return Registered(opened.id, app, new)
