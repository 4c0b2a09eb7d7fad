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
import stat
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
        self,
        path: Path,
        secret_keys: list[SecretKey],
        audit_key: bytes,
        audit_from: int,
        bound: bool = False,
    ) -> None:
        self.path = path
        self._secret_keys = list(secret_keys)
        self.audit_key = audit_key
        self.audit_from = audit_from
        #: Once a database was secured with these keys, they never secure another one.
        self.bound = bound
        self._lock = threading.Lock()
        self._seen = _stamp_of(path)

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
        _private(path)
        try:
            data = json.loads(path.read_text())
            keys = [SecretKey(str(k["id"]), _b64(k["key"])) for k in data["secrets"]]
            audit = data["audit"]
            keyring = cls(
                path,
                keys,
                _b64(audit["key"]),
                int(audit["from_seq"]),
                bool(data.get("bound", False)),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StorageError(
                f"cannot read the keys file {path} ({exc}); restore it from your backup"
            ) from None
        if not keys or any(len(k.key) != 32 for k in keys) or len(keyring.audit_key) != 32:
            raise StorageError(f"the keys file {path} holds a key of the wrong size")
        return keyring

    def save(self, secret_keys: list[SecretKey] | None = None) -> None:
        """Write the keys (``secret_keys`` instead of the ones in use, when given) to the file,
        all at once; StorageError saying why when the file cannot be written."""
        data: dict[str, Any] = {
            "version": 1,
            "secrets": [
                {"id": k.id, "key": _text(k.key)}
                for k in (self.secret_keys if secret_keys is None else secret_keys)
            ],
            "audit": {"key": _text(self.audit_key), "from_seq": self.audit_from},
            "bound": self.bound,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(self.path, json.dumps(data, indent=2).encode(), mode=0o600)
        except OSError as exc:
            raise StorageError(
                f"cannot write the keys file {self.path} ({exc.strerror}); nothing was changed. "
                "A read-only keys file (a mounted secret) is rotated outside Conveyor"
            ) from None
        with self._lock:
            self._seen = _stamp_of(self.path)

    def bind(self) -> None:
        """Mark these keys as securing a database now (saved to the file)."""
        if not self.bound:
            self.bound = True
            self.save()

    @property
    def secret_keys(self) -> list[SecretKey]:
        self._refresh()
        with self._lock:
            return list(self._secret_keys)

    def _refresh(self) -> None:
        """Another server sharing the database may have rotated the keys: when the file
        changed since it was read, use its keys."""
        stamp = _stamp_of(self.path)
        with self._lock:
            if stamp is None or stamp == self._seen or not self.path.is_file():
                return
        fresh = Keyring.load(self.path)
        with self._lock:
            self._secret_keys = fresh._secret_keys
            self._seen = stamp

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
        for key in self.secret_keys:
            if key.id == key_id:
                return key
        raise StorageError(
            f"a secret was encrypted with key {key_id!r}, which {self.path} does not hold; "
            "restore the keys file from the backup taken with the database"
        )

    def add_secret_key(self) -> SecretKey:
        """A new newest key: saved to the file first, used only once it is there."""
        current = self.secret_keys
        taken = {k.id for k in current}
        number = len(taken) + 1
        while f"k{number}" in taken:
            number += 1
        key = SecretKey(f"k{number}", AESGCM.generate_key(256))
        self.save([key, *current])
        with self._lock:
            self._secret_keys = [key, *current]
        return key

    def keep_only_newest(self) -> list[str]:
        """Drop every secrets key but the newest (once nothing is encrypted with them);
        return the ids dropped."""
        current = self.secret_keys
        self.save(current[:1])
        with self._lock:
            self._secret_keys = current[:1]
        return [k.id for k in current[1:]]

    # --- audit and tokens ---------------------------------------------------------------------

    def mac(self, body: bytes) -> str:
        return hmac.new(self.audit_key, body, hashlib.sha256).hexdigest()

    def token_digest(self, token: str) -> str:
        """What the database keeps of an API token: an HMAC under a key derived from the
        audit key, so nobody with only the database can make a row a token would match."""
        return hmac.new(self._token_key(), token.encode(), hashlib.sha256).hexdigest()

    def token_mac(self, *fields: object) -> str:
        """The MAC that binds a token's row (its digest, owner, expiry, revocation) together:
        a row whose owner or expiry was changed in the database stops matching it."""
        body = "\x1f".join("" if field is None else str(field) for field in fields)
        return hmac.new(self._token_key(), b"row\x1f" + body.encode(), hashlib.sha256).hexdigest()

    def _token_key(self) -> bytes:
        return hmac.new(self.audit_key, b"conveyor tokens v1", hashlib.sha256).digest()


def _stamp_of(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _private(path: Path) -> None:
    """A keys file others may read is made 0600, or refused when it cannot be."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # reading it says what is wrong
    if mode & 0o077:
        try:
            os.chmod(path, 0o600)
        except OSError:
            raise StorageError(
                f"the keys file {path} can be read by other users (mode {mode:04o}) and this "
                f"server may not change that; run `chmod 600 {path}` as its owner"
            ) from None


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _b64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode())
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
