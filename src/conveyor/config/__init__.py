"""Per-environment configuration for apps, compatible with R's ``config`` package.

One ``config.yml`` with a ``default`` section and one section per environment; Conveyor sets
``CONVEYOR_ENV`` (and ``R_CONFIG_ACTIVE``) so the right section is used in Dev, Test and Prod::

    from conveyor import config

    url = config.get("forecast_url")
    if config.is_active("prod"):
        ...

This package imports nothing from Conveyor's server and needs only PyYAML, so it can be
imported inside every app's runtime. See docs/config.md.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from conveyor.config.locate import active_name, locate
from conveyor.config.mapping import Config
from conveyor.config.merge import merge
from conveyor.config.parse import load
from conveyor.config.resolve import (
    default_inherits_note,
    inherits_variables,
    materialize,
    resolved_tree,
    section_to_use,
    variables_read,
)
from conveyor.errors import (
    ConfigError,
    ConfigFileNotFound,
    ConfigStructureError,
    ConfigSyntaxError,
    ConfigWarning,
    InheritanceError,
    UnknownSection,
    UnresolvedValue,
)

__all__ = [
    "Config",
    "ConfigError",
    "ConfigFileNotFound",
    "ConfigStructureError",
    "ConfigSyntaxError",
    "ConfigWarning",
    "InheritanceError",
    "UnknownSection",
    "UnresolvedValue",
    "active_name",
    "get",
    "is_active",
    "merge",
]


def get(
    value: str | None = None,
    config: str | None = None,
    file: str | os.PathLike[str] | None = None,
    use_parent: bool = True,
    *,
    default: Any = None,
    strict: bool = False,
) -> Any:
    """Read the active configuration, or one top-level value of it.

    With no ``value``, the whole resolved configuration as a read-only ``Config`` (which also
    tells its ``active`` name and ``file``). With ``value``, that top-level value, or ``default``
    (``None`` unless given) when the key is absent.

    ``config`` picks the section (else ``$CONVEYOR_ENV``, ``$R_CONFIG_ACTIVE``, ``"default"``);
    ``file`` the file (else ``$CONVEYOR_CONFIG_FILE``, ``$R_CONFIG_FILE``, ``config.yml``,
    searched in parent directories when ``use_parent``). An active name with no section warns
    with ``ConfigWarning`` and uses ``default``; ``strict=True`` makes that an error.
    """
    resolved = _config(active_name(config), file, use_parent, strict)
    if value is None:
        return resolved
    return resolved.get(value, default)


def is_active(name: str) -> bool:
    """True when ``name`` is the active configuration name."""
    return active_name() == name


def _config(
    active: str, file: str | os.PathLike[str] | None, use_parent: bool, strict: bool
) -> Config:
    path, stat = locate(file, use_parent)
    parsed = load(path, stat)
    section, warning = section_to_use(parsed, active, strict=strict)
    note = default_inherits_note(parsed)
    if note is not None and ("warned-inherits-in-default", "") not in parsed.memo:
        parsed.memo[("warned-inherits-in-default", "")] = True
        warnings.warn(note, ConfigWarning, stacklevel=3)
    if warning is not None and ("warned", active) not in parsed.memo:
        # Once per file and name, not on every read. stacklevel 3 points at get()'s caller.
        parsed.memo[("warned", active)] = True
        warnings.warn(
            f"{warning}. Pass strict=True to make this an error.", ConfigWarning, stacklevel=3
        )
    # The Config is reused while the variables its !env values (and `inherits:` lines) read
    # keep their values.
    memo_key = ("config", active)
    cached = parsed.memo.get(memo_key)
    if cached is not None:
        variables, values, made = cached
        if tuple(os.environ.get(name) for name in variables) == values:
            return made  # type: ignore[no-any-return]
    tree = resolved_tree(parsed, section)
    variables = (*variables_read(tree), *inherits_variables(parsed))
    # Snapshot first, then build: a variable changed in between makes the next get() rebuild.
    snapshot = tuple(os.environ.get(name) for name in variables)
    result = materialize(parsed, tree, section, os.environ)
    made = Config(result.values, active=active, section=section, file=path, sources=result.sources)
    parsed.memo[memo_key] = (variables, snapshot, made)
    return made
