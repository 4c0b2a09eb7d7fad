"""The exit codes of `conveyor`, and which error type leads to which. Documented in
docs/cli.md; scripts and CI jobs rely on them."""

from __future__ import annotations

from enum import IntEnum

from conveyor import errors


class ExitCode(IntEnum):
    OK = 0
    #: Something failed, or a check found problems.
    FAILURE = 1
    #: The command ran and found differences (`config diff --exit-code`, later plan and drift).
    DIFFERENCES = 2
    #: The pipeline's rules refused the request (e.g. Prod takes only promotions from Test, or
    #: an environments file manages what was to be changed).
    REFUSED = 3
    #: Not allowed: no valid token (missing, unknown, expired, revoked, disabled user), or the
    #: user lacks the role the request needs.
    NOT_ALLOWED = 4
    #: Interrupted (Ctrl-C).
    INTERRUPTED = 130
    #: The command line itself was wrong: unknown option, missing argument.
    USAGE = 64


def for_error(error: errors.ConveyorError) -> ExitCode:
    """The exit code a command ends with when ``error`` stops it."""
    if isinstance(error, errors.PolicyViolation):
        return ExitCode.REFUSED
    if isinstance(error, errors.Unauthorized | errors.Forbidden):
        return ExitCode.NOT_ALLOWED
    return ExitCode.FAILURE
