"""Every exception Conveyor raises, in one tree.

Callers tell "you gave me something wrong" from "that does not exist" from "that is not allowed"
by type, never by parsing messages. How a type maps to an HTTP status or a CLI exit code is
decided at the edges (``conveyor.api``, ``conveyor.cli``), not here.

::

    ConveyorError
    ├── InvalidInput                 the caller supplied something malformed; fix it and retry
    │   └── ConfigError              a config.yml problem (conveyor.config)
    │       ├── ConfigFileNotFound   no config file where it was looked for
    │       ├── ConfigSyntaxError    not YAML, or a tag used wrongly; carries line and column
    │       ├── ConfigStructureError no `default` section, a section that is not a mapping, ...
    │       ├── InheritanceError     `inherits:` names a missing section, or forms a cycle
    │       ├── UnknownSection       strict mode: the active name has no section
    │       └── UnresolvedValue      `!env` variable unset with no fallback, or an `!expr`
    │   ├── ManifestError            a conveyor.yml problem: names the file, field and fix
    │   ├── BundleError              a bundle cannot be built or read
    │   │   └── UnsafeArchive        an archive tries to escape, or does not match its id
    │   ├── LockFailed               requirements could not be locked with uv
    │   └── DataError                conveyor.data: an undeclared connection, a bad output name
    ├── NotFound                     a named thing (app, environment, release, ...) does not exist
    ├── Conflict                     the request clashes with current state
    │   ├── OperationInProgress      another operation holds this app in this environment
    │   └── InvalidTransition        a release cannot move to that state from its current one
    ├── PolicyViolation              the pipeline's rules refuse it (Prod takes only promotions)
    │   └── ReadOnlyData             conveyor.data: a write through a read-only data connection
    ├── Unauthorized                 no valid token: none, unknown, expired, revoked, user disabled
    ├── Forbidden                    a valid token, but its user lacks the role the request needs
    ├── ServerUnreachable            the CLI could not reach the server it was pointed at
    ├── RuntimeFailure               an app, build or check failed while running
    └── StorageError                 metadata or blobs could not be read or written intact
        └── IntegrityError           stored content does not match its hash

Warnings (not errors) live here too: ``ConfigWarning`` is issued when the active configuration
name has no section and ``default`` is used instead, as R's ``config`` package does, and when
``default`` has an ``inherits:`` key, which R ignores and so does Conveyor.
"""

from __future__ import annotations

import re


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""


class InvalidInput(ConveyorError):
    """The caller supplied something malformed: a file, a flag, a request body."""


class NotFound(ConveyorError):
    """A named thing does not exist."""


class Conflict(ConveyorError):
    """The request clashes with the current state."""


class PolicyViolation(ConveyorError):
    """The pipeline's rules refuse the request."""


class Unauthorized(ConveyorError):
    """The request carries no valid credentials."""


class Forbidden(ConveyorError):
    """The user is known but lacks the role (or admin rights) the request needs; the message
    names the role and how to get it."""


class ServerUnreachable(ConveyorError):
    """The server could not be reached; the message names the address tried."""


class RuntimeFailure(ConveyorError):
    """An app, a runtime build or a check failed while running."""


class StorageError(ConveyorError):
    """Metadata or blobs could not be read or written intact."""


class ManifestError(InvalidInput):
    """A conveyor.yml problem; the message names the file, the field and the fix."""


class BundleError(InvalidInput):
    """A bundle cannot be built from a directory, or read from an archive."""


class UnsafeArchive(BundleError):
    """An archive holds an entry that could escape or harm the extraction root, or its content
    does not match its id."""


class LockFailed(InvalidInput):
    """The app's requirements could not be locked with uv; uv's own message is included."""


class DataError(InvalidInput):
    """conveyor.data: a connection the environment does not declare, an output name that
    leaves the output location, settings Conveyor cannot read."""


class ReadOnlyData(PolicyViolation):
    """conveyor.data: a write through a read-only data connection was refused; nothing was
    changed. The message names the connection, the environment and why."""


class OperationInProgress(Conflict):
    """Another operation is running for this app in this environment."""


class InvalidTransition(Conflict):
    """A release cannot move to the requested state from the state it is in."""


class IntegrityError(StorageError):
    """Stored content does not match its hash: a blob or an audit event was altered."""


# --- conveyor.config -------------------------------------------------------------------------


class ConfigError(InvalidInput):
    """A problem with a configuration file; the message names the file and, where known, the
    section, key and line."""


class ConfigFileNotFound(ConfigError):
    """No configuration file where it was looked for."""


class ConfigSyntaxError(ConfigError):
    """The file is not valid YAML, or a ``!env``/``!expr`` tag is malformed."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line = line
        self.column = column


class ConfigStructureError(ConfigError):
    """The YAML is valid but not a configuration: no ``default`` section, a non-mapping section."""


class InheritanceError(ConfigError):
    """``inherits:`` names a section that does not exist, or sections inherit in a cycle
    (``cycle`` then names the sections in it)."""

    def __init__(self, message: str, *, cycle: tuple[str, ...] = ()):
        super().__init__(message)
        self.cycle = cycle


class UnknownSection(ConfigError):
    """Strict mode: the active configuration name has no section in the file."""


class UnresolvedValue(ConfigError):
    """A value in the active section cannot be produced: an ``!env`` variable is unset and has
    no fallback, or the value is an R expression (``!expr``), which Conveyor does not run."""


class ConfigWarning(UserWarning):
    """The active configuration name has no section; ``default`` is used instead."""


def error_code(error_type: type[BaseException]) -> str:
    """The stable code of an error type in the API's error shape: its name in snake case
    (``PolicyViolation`` -> ``policy_violation``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", error_type.__name__).lower()
