"""Opening a store's keys, and securing at rest a database written before it had any.

A database records a check value of the keys it was secured with. On every open:

- it has one: the keys file must exist and match it, or the store refuses to open (a server
  started without its keys must not make new ones: the secrets would be lost);
- it has none: this is a new database or one written before secrets were encrypted. New keys
  are made (or a keys file left by an interrupted upgrade of this database is taken), and in one
  transaction every secret value is encrypted, the digests of existing API tokens are keyed
  (those tokens expire within 30 days), the audit chain is keyed from the next event on (an
  ``audit.keyed`` event records where), and the check value is stored. Then the keys file is
  marked bound: it never secures another database, nor this one again after its check value
  was removed (which is how someone with only the database would try to start the chain anew).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from conveyor.errors import StorageError
from conveyor.storage import audit, catalog, tokens
from conveyor.storage.keyring import Keyring
from conveyor.storage.store import bind_keys
from conveyor.storage.variables import seal_plain_secrets

KEYS_CHECK = "keys_check"
#: How long API tokens made before the upgrade keep working.
LEGACY_TOKEN_DAYS = 30


def open_keyring(engine: Engine, path: Path) -> Keyring:
    with engine.begin() as connection:
        check = catalog.get_setting(connection, KEYS_CHECK)
        if check is not None:
            keyring = _matching(path, check)
        else:
            head, _ = audit.head(connection)
            keyring = _for_new_check(path, head)
            bind_keys(connection, keyring)
            encrypted = seal_plain_secrets(connection)
            expiry = datetime.now(UTC) + timedelta(days=LEGACY_TOKEN_DAYS)
            legacy = tokens.seal_legacy(connection, expiry.isoformat(timespec="microseconds"))
            if head > 0:
                audit.record(
                    connection,
                    "server",
                    "audit.keyed",
                    "audit",
                    {
                        "unkeyed_events": head,
                        "secrets_encrypted": encrypted,
                        "tokens_keyed": legacy,
                        "keys_file": str(path),
                    },
                )
            catalog.set_setting(connection, KEYS_CHECK, keyring.check_value())
    keyring.bind()
    return keyring


def _matching(path: Path, check: str) -> Keyring:
    if not path.exists():
        raise StorageError(
            f"this database's secrets and audit chain are sealed with keys that are not here: "
            f"{path} is missing. Restore it from its backup (or point CONVEYOR_KEYS_FILE at "
            "it); Conveyor does not make new keys for a database that has some"
        )
    keyring = Keyring.load(path)
    if keyring.check_value() != check:
        raise StorageError(
            f"the keys in {path} are not the keys this database was sealed with; restore the "
            "right keys file (or point CONVEYOR_KEYS_FILE at it)"
        )
    return keyring


def _for_new_check(path: Path, head: int) -> Keyring:
    if not path.exists():
        return Keyring.create(path, audit_from=head + 1)
    keyring = Keyring.load(path)
    if keyring.bound:
        raise StorageError(
            f"{path} already secures a database, and this one has no record of it: either "
            "these are another server's keys, or this database's record of its keys was "
            "removed. Conveyor does not secure it again; point CONVEYOR_KEYS_FILE at this "
            "database's keys, or restore the database from a backup"
        )
    if keyring.audit_from != head + 1:
        raise StorageError(
            f"{path} holds keys made for another database (its audit chain is keyed from "
            f"event {keyring.audit_from}; this database's next event is {head + 1}). Point "
            "CONVEYOR_KEYS_FILE at this database's keys, or move that file away to make new ones"
        )
    return keyring
