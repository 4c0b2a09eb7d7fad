"""The one merge rule every section, parent and overlay goes through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``overlay`` merged over ``base`` as a new dict; neither input is changed.

    Mappings merge key by key, recursively. Anything else in ``overlay`` -- a scalar, a list, a
    ``None`` -- replaces what ``base`` had at that key. Lists are replaced, never concatenated or
    merged element-wise, so a section that lists two hosts gets exactly those two.
    """
    merged: dict[str, Any] = {key: _copy(value) for key, value in base.items()}
    for key, value in overlay.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge(current, value)
        else:
            merged[key] = _copy(value)
    return merged


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
