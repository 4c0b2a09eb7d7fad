"""``Config``: the resolved configuration, read-only, aware of where it came from."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any


class Config(Mapping[str, Any]):
    """The resolved configuration of one active name, as ``conveyor.config.get()`` returns it.

    A read-only mapping: nested mappings are read-only too and lists come back as tuples, so
    one process cannot change what another part of it reads. ``to_dict()`` gives a plain,
    mutable copy (for ``json.dumps`` and friends). Its repr lists keys, never values.
    """

    __slots__ = ("_values", "active", "file", "section", "sources")

    def __init__(
        self,
        values: Mapping[str, Any],
        *,
        active: str,
        section: str,
        file: str,
        sources: Mapping[str, str],
    ) -> None:
        self._values: Mapping[str, Any] = MappingProxyType(
            {key: _frozen(value) for key, value in values.items()}
        )
        #: The active configuration name (`CONVEYOR_ENV`, `R_CONFIG_ACTIVE`, or the argument).
        self.active = active
        #: The section actually used: `active`, or `default` when the file has no such section.
        self.section = section
        #: Absolute path of the file read.
        self.file = file
        #: Dotted key -> the section that supplied its value.
        self.sources: Mapping[str, str] = MappingProxyType(dict(sources))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_dict(self) -> dict[str, Any]:
        """A plain, mutable deep copy of the values."""
        return {key: _thawed(value) for key, value in self._values.items()}

    def __repr__(self) -> str:
        return f"Config(active={self.active!r}, file={self.file!r}, keys={list(self._values)!r})"


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thawed(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thawed(item) for item in value]
    return value
