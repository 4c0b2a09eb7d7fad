"""Rotating the key that encrypts secrets at rest: a new key is saved first, every secret is
encrypted again with it in one transaction, and only then are the old keys dropped. Stopped at
any point, nothing is lost: every key still needed is in the keys file."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.services.context import Services
from conveyor.storage import audit, variables


@dataclass(frozen=True)
class Rotation:
    key: str
    resealed: int
    dropped: list[str]


def rotate_key(services: Services, actor: str) -> Rotation:
    keys = services.store.keys
    new = keys.add_secret_key()
    with services.store.transaction() as connection:
        resealed = variables.reseal_all(connection)
        audit.record(
            connection, actor, "secrets.rotate-key", "secrets", {"key": new.id, "secrets": resealed}
        )
    # A server sharing the database may have sealed a value with the old key just before it
    # saw the new one: a second pass catches what committed meanwhile, before the old key goes.
    with services.store.transaction() as connection:
        variables.reseal_older(connection, new.id)
    return Rotation(new.id, resealed, keys.keep_only_newest())
