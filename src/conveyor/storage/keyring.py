"""The server's keys, kept outside the metadata database, so that the database alone reveals no
secret and cannot be rewritten into an audit chain that verifies.

Two kinds of key, in one file (``$CONVEYOR_KEYS_FILE``, else ``HOME/keys.json``, mode 0600):

    {"version": 1,
     "secrets": [{"id": "k2", "key": "<base64>"}, {"id": "k1", "key": "<base64>"}],
     "audit": {"key": "<base64>", "from_seq": 1}}

- ``secrets``: AES-256-GCM keys (``cryptography``), newest first. The newest encrypts; every
  key listed decrypts, so a rotation that stops half-way loses nothing. Each value is bound to
  where it belongs (its app, environment and name) as associated data: a value copied to
  another row in the database does not decrypt there.
- ``audit``: the HMAC-SHA-256 key of the audit chain, and the first event it keys (events
  before it were written before the upgrade and are checked with the old, unkeyed rule).
  ``from_seq`` lives here, not in the database, so the database cannot move it.

The database keeps a check value (an HMAC of a fixed text with the audit key): a server started
with another keys file, or none, refuses to start rather than make a second set of keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conveyor.errors import IntegrityError, StorageError
from conveyor.storage.atomic_files import write_atomically

SEALED_PREFIX = "cv1:"
_CHECK_TEXT = b"conveyor keys check v1"


def keys_path(home: Path) -> Path:
    """Where the keys are: ``$CONVEYOR_KEYS_FILE`` (a file outside the home, e.g. on a secrets
    mount), else ``HOME/keys.json``."""
    given = os.environ.get("CONVEYOR_KEYS_FILE")
    return Path(given).expanduser() if given else home / "keys.json"


@dataclass(frozen=True)
class SecretKey:
    id: str
    key: bytes


class Keyring:
    """The keys of one server. Rotation replaces the secrets keys in place (under a lock), so
    every connection that holds this object sees the new list."""

    def __init__(
        self, path: Path, secret_keys: list[SecretKey], audit_key: bytes, audit_from: int
    ) -> None:
        self.path = path
        self._secret_keys = list(secret_keys)
        self.audit_key = audit_key
        self.audit_from = audit_from
        self._lock = threading.Lock()

    # --- the file ----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, audit_from: int = 1) -> Keyring:
        """New keys, written to ``path`` (0600) before they are used."""
        keyring = cls(
            path, [SecretKey("k1", AESGCM.generate_key(256))], secrets.token_bytes(32), audit_from
        )
        keyring.save()
        return keyring

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            data = json.loads(path.read_text())
            keys = [SecretKey(str(k["id"]), _b64(k["key"])) for k in data["secrets"]]
            audit = data["audit"]
            keyring = cls(path, keys, _b64(audit["key"]), int(audit["from_seq"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StorageError(
                f"cannot read the keys file {path} ({exc}); restore it from your backup"
            ) from None
        if not keys or any(len(k.key) != 32 for k in keys) or len(keyring.audit_key) != 32:
            raise StorageError(f"the keys file {path} holds a key of the wrong size")
        return keyring

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data: dict[str, Any] = {
            "version": 1,
            "secrets": [{"id": k.id, "key": _text(k.key)} for k in self.secret_keys],
            "audit": {"key": _text(self.audit_key), "from_seq": self.audit_from},
        }
        write_atomically(self.path, json.dumps(data, indent=2).encode(), mode=0o600)

    @property
    def secret_keys(self) -> list[SecretKey]:
        with self._lock:
            return list(self._secret_keys)

    def check_value(self) -> str:
        """What the database keeps to tell these keys from others."""
        return hmac.new(self.audit_key, _CHECK_TEXT, hashlib.sha256).hexdigest()

    # --- secrets -----------------------------------------------------------------------------

    def seal(self, plaintext: str, context: str) -> str:
        """``plaintext`` encrypted with the newest key, bound to ``context`` (where it is
        stored): ``cv1:<key id>:<base64 of nonce and ciphertext>``."""
        newest = self.secret_keys[0]
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(newest.key).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{SEALED_PREFIX}{newest.id}:{_text(nonce + sealed)}"

    def unseal(self, sealed: str, context: str) -> str:
        """The plaintext of a value ``seal`` made for the same ``context``."""
        prefix, key_id, body = (sealed.split(":", 2) + ["", ""])[:3]
        if f"{prefix}:" != SEALED_PREFIX or not body:
            raise IntegrityError(f"the stored value of {context} is not an encrypted value")
        key = self._secret_key(key_id)
        try:
            raw = _b64(body)
            plain = AESGCM(key.key).decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError):
            raise IntegrityError(
                f"the stored value of {context} does not decrypt: it was altered, or copied "
                "from another place in the database"
            ) from None
        return str(plain.decode())

    def _secret_key(self, key_id: str) -> SecretKey:
        for attempt in range(2):
            for key in self.secret_keys:
                if key.id == key_id:
                    return key
            if attempt == 0 and self.path.exists():
                # Another server sharing this database may have rotated: read the file again.
                fresh = Keyring.load(self.path)
                with self._lock:
                    self._secret_keys = fresh.secret_keys
        raise StorageError(
            f"a secret was encrypted with key {key_id!r}, which {self.path} does not hold; "
            "restore the keys file from the backup taken with the database"
        )

    def add_secret_key(self) -> SecretKey:
        """A new newest key, saved before anything is encrypted with it."""
        with self._lock:
            taken = {k.id for k in self._secret_keys}
            number = len(taken) + 1
            while f"k{number}" in taken:
                number += 1
            key = SecretKey(f"k{number}", AESGCM.generate_key(256))
            self._secret_keys.insert(0, key)
        self.save()
        return key

    def keep_only_newest(self) -> list[str]:
        """Drop every secrets key but the newest (once nothing is encrypted with them);
        return the ids dropped."""
        with self._lock:
            dropped = [k.id for k in self._secret_keys[1:]]
            self._secret_keys = self._secret_keys[:1]
        self.save()
        return dropped

    # --- audit -------------------------------------------------------------------------------

    def mac(self, body: bytes) -> str:
        return hmac.new(self.audit_key, body, hashlib.sha256).hexdigest()


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _b64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode())
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
