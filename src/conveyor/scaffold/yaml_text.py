"""YAML written as text, so the files `conveyor init` writes keep their comments: a value is
written plain when YAML reads it back as the same string, else double-quoted (a JSON string is
a valid YAML double-quoted scalar)."""

from __future__ import annotations

import json
import re

import yaml

# Plain scalars are kept to unsurprising characters; anything else is quoted.
_PLAIN = re.compile(r"[A-Za-z0-9_./()=-][A-Za-z0-9_./:()= -]*")


def scalar(value: str) -> str:
    """``value`` as a YAML scalar that reads back as exactly that string."""
    if _PLAIN.fullmatch(value) and not value.endswith((" ", ":")):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)
