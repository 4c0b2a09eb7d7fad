"""Write the generated tables of docs/security.md (roles and the permission of every API
route) from the code. `make docs` runs it; tests/api/test_permissions.py checks them."""

from __future__ import annotations

import sys
from pathlib import Path

from conveyor.api.app import ApiContext, create_app
from conveyor.api.background import Background
from conveyor.api.permission_table import BEGIN, END, render

SECURITY = Path(__file__).resolve().parent / "security.md"


def main() -> int:
    app = create_app(ApiContext(services=None, background=Background()))  # type: ignore[arg-type]
    text = SECURITY.read_text()
    if BEGIN not in text or END not in text:
        print(f"{SECURITY} has no generated section between {BEGIN} and {END}", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    SECURITY.write_text(head + render(app) + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
