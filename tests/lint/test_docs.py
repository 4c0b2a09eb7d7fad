"""docs/lint.md shows real output: its example is the starting point of the config.md
tutorial, linted."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _block(text: str, language: str, after: str = "") -> str:
    start = text.index(after) if after else 0
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None
    return match.group(1)


def test_the_example_in_lint_md_is_what_lint_prints(tmp_path, monkeypatch, conveyor_lint):
    app = _block((DOCS / "config.md").read_text(), "python", "### 1. The starting point")
    (tmp_path / "app.py").write_text(app)
    monkeypatch.chdir(tmp_path)
    lint_md = (DOCS / "lint.md").read_text()
    shown = _block(lint_md, "console")
    command, _, expected = shown.partition("\n")
    assert command == "$ conveyor lint"
    code, out, err = conveyor_lint()
    assert (code, err) == (1, "")
    assert out == expected

    code, out, _ = conveyor_lint("--json")
    assert json.loads(out)[:1] == json.loads(_block(lint_md, "json"))
