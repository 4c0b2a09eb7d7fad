"""Rendering the console's pages: one Jinja2 environment over the templates folder, with
autoescaping on, and a few filters for what pages show (ages, bundle aliases)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"

_ENVIRONMENT = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def age(stamp: str | None) -> str:
    """How long ago an ISO 8601 time was: 5s, 3m, 2h, 4d."""
    if not stamp:
        return ""
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return ""
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_ENVIRONMENT.filters["age"] = age
_ENVIRONMENT.filters["alias"] = lambda bundle: (bundle or "")[:10]


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_ENVIRONMENT.get_template(template).render(**values), status_code=status)


def fragment(template: str, **values: Any) -> str:
    return _ENVIRONMENT.get_template(template).render(**values)
