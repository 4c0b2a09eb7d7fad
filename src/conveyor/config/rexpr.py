"""The R expressions that ``!expr`` may hold in a file Conveyor reads: reading an environment
variable, R's idiomatic way to keep a secret out of ``config.yml``. Recognised by a strict
grammar, never run:

    Sys.getenv("NAME")                      the variable, or "" when it is not set
    Sys.getenv("NAME", "fallback")          the variable, or "fallback" when it is not set
    Sys.getenv("NAME", unset = "fallback")  the same, with the argument named

Single or double quotes, spaces (or none) around the parentheses, comma and ``=``. As in R,
a variable set to the empty string gives "" (``unset`` applies only when it is not set).
Anything else (other functions, escapes, variables, nested calls) is not recognised, and the
caller refuses it as R code Conveyor does not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: An R string literal without escapes: "..." or '...', holding neither quote character nor a
#: backslash (so what is written is exactly the string R would make).
_STRING = r"""(?:"(?P<{0}_dq>[^"\\\n]*)"|'(?P<{0}_sq>[^'\\\n]*)')"""
_SPACE = r"[ \t]*"
_GETENV = re.compile(
    rf"{_SPACE}Sys\.getenv{_SPACE}\({_SPACE}"
    + _STRING.format("name")
    + rf"(?:{_SPACE},{_SPACE}(?:unset{_SPACE}={_SPACE})?"
    + _STRING.format("unset")
    + rf")?{_SPACE}\){_SPACE}"
)
#: What a variable name may be: letters, digits and underscores, not starting with a digit.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Getenv:
    """A recognised ``Sys.getenv(...)``: the variable, and what R gives when it is not set."""

    name: str
    unset: str = ""
    unset_given: bool = False


def parse_getenv(code: str) -> Getenv | None:
    """The ``Sys.getenv`` call that ``code`` is, or None when it is anything else."""
    match = _GETENV.fullmatch(code)
    if match is None:
        return None
    name = _group(match, "name")
    if name is None or not _NAME.fullmatch(name):
        return None
    unset = _group(match, "unset")
    return Getenv(name, unset or "", unset is not None)


def _group(match: re.Match[str], prefix: str) -> str | None:
    double, single = match.group(f"{prefix}_dq"), match.group(f"{prefix}_sq")
    return double if double is not None else single
