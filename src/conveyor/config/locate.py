"""Which configuration is active, and which file holds it."""

from __future__ import annotations

import os
import stat as stat_module

from conveyor.errors import ConfigFileNotFound

ACTIVE_VARIABLES = ("CONVEYOR_ENV", "R_CONFIG_ACTIVE")
FILE_VARIABLES = ("CONVEYOR_CONFIG_FILE", "R_CONFIG_FILE")
DEFAULT_FILE = "config.yml"


def active_name(config: str | None = None) -> str:
    """``config`` if given, else ``$CONVEYOR_ENV``, else ``$R_CONFIG_ACTIVE``, else
    ``"default"``. Empty values count as unset."""
    if config:
        return config
    for variable in ACTIVE_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value
    return "default"


def locate(
    file: str | os.PathLike[str] | None = None, use_parent: bool = True
) -> tuple[str, os.stat_result]:
    """The absolute path and stat of the config file to read.

    ``file`` if given, else ``$CONVEYOR_CONFIG_FILE``, else ``$R_CONFIG_FILE``, else
    ``config.yml``; relative to the working directory. When it is not there and ``use_parent``,
    the same file name is looked for in each parent directory up to the root.
    """
    given, origin = _requested(file)
    path = os.path.abspath(given)
    found = _stat_file(path)
    if found is not None:
        return path, found
    name = os.path.basename(path)
    directory = os.path.dirname(path)
    if use_parent:
        parent = os.path.dirname(directory)
        while True:
            candidate = os.path.join(parent, name)
            found = _stat_file(candidate)
            if found is not None:
                return candidate, found
            if os.path.dirname(parent) == parent:
                break
            parent = os.path.dirname(parent)
        raise ConfigFileNotFound(
            f"config file {name!r}{origin} not found in {directory} or any parent directory; "
            f"create it with a `default:` section, or point CONVEYOR_CONFIG_FILE at it"
        )
    raise ConfigFileNotFound(
        f"config file {path}{origin} not found (parent directories were not searched because "
        f"use_parent is False)"
    )


def _requested(file: str | os.PathLike[str] | None) -> tuple[str, str]:
    if file is not None and os.fspath(file):
        return os.fspath(file), ""
    for variable in FILE_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value, f" (from {variable})"
    return DEFAULT_FILE, ""


def _stat_file(path: str) -> os.stat_result | None:
    try:
        result = os.stat(path)
    except OSError:
        return None
    return result if stat_module.S_ISREG(result.st_mode) else None
