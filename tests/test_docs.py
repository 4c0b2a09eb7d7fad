"""Docs stay true to the code: the CLI reference is generated, every command is explained
somewhere besides it, and the error tree drawn in errors.py lists every error."""

from __future__ import annotations

import inspect
import re
import runpy
from pathlib import Path

from conveyor import errors

ROOT = Path(__file__).resolve().parents[1]


def _reference_module() -> dict[str, object]:
    return runpy.run_path(str(ROOT / "docs" / "cli_reference.py"))


def test_cli_reference_is_up_to_date():
    render = _reference_module()["render"]
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render(), "docs/cli.md is stale: run `make docs` and commit it"  # type: ignore[operator]


def test_every_command_is_explained_in_the_guides():
    module = _reference_module()
    from conveyor.cli import cli

    paths = [" ".join(path) for path, _ in module["commands"](cli, ("conveyor",))]  # type: ignore[operator]
    guides = "\n".join(
        path.read_text()
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        if path.name != "cli.md"
    )
    leaves = [p for p in paths if not any(other.startswith(p + " ") for other in paths)]
    missing = [p for p in leaves if p not in guides]
    assert not missing, f"commands not explained in README.md or docs/: {missing}"


def test_error_tree_in_the_docstring_lists_every_error():
    doc = errors.__doc__ or ""
    classes = [
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, errors.ConveyorError)
        and value.__module__ == errors.__name__
    ]
    missing = [name for name in classes if name not in doc]
    assert not missing, f"errors.py docstring does not draw: {missing}"
    assert "ConfigWarning" in doc


# --- Links: every relative link in README.md and docs/*.md resolves inside the repository ---

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _split_code(text: str) -> tuple[str, list[tuple[int, str, str]]]:
    """The text with fenced blocks blanked (line numbers kept), and each fenced line as
    (line number, line, the block's language)."""
    prose: list[str] = []
    code: list[tuple[int, str, str]] = []
    fence: str | None = None
    language = ""
    for number, line in enumerate(text.splitlines(), 1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence, language = match.group(1), line.strip()[3:].strip()
            prose.append("")
        elif fence is not None and match and line.strip() == fence:
            fence = None
            prose.append("")
        elif fence is not None:
            code.append((number, line, language))
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), code


def _inline_spans(prose: str) -> list[tuple[int, str]]:
    spans = []
    for paragraph_start, paragraph in _paragraphs(prose):
        for match in _INLINE_CODE.finditer(paragraph):
            line = paragraph_start + paragraph.count("\n", 0, match.start())
            spans.append((line, match.group(2).replace("\n", " ")))
    return spans


def _paragraphs(prose: str) -> list[tuple[int, str]]:
    """Inline code may span lines but not paragraphs: (first line number, paragraph)."""
    found, current, start = [], [], 1
    for number, line in enumerate(prose.splitlines(), 1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            found.append((start, "\n".join(current)))
            current = []
    if current:
        found.append((start, "\n".join(current)))
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, without punctuation, spaces as
    hyphens (markup removed first; a link counts by its text)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = _split_code(path.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in prose.splitlines():
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    prose, _ = _split_code(path.read_text())
    # Inline code is not a link: blank it, keeping offsets so line numbers stay right.
    prose = _INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)
    targets = [(m.start(), m.group(1)) for m in _LINK.finditer(prose)]
    targets += [(m.start(), m.group(1)) for m in _REFERENCE.finditer(prose)]
    broken = []
    for offset, target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        where = f"{path.relative_to(ROOT)}:{prose.count(chr(10), 0, offset) + 1}"
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{where}: {target} points outside the repository")
        elif not resolved.exists():
            broken.append(f"{where}: {target} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{where}: {target}: no heading #{anchor} in {resolved.name}")
    return broken


def test_github_slugs():
    assert github_slug("7. Sleep and wake") == "7-sleep-and-wake"
    assert github_slug("8. Retention and `conveyor gc`") == "8-retention-and-conveyor-gc"
    assert github_slug("Who may view an app?") == "who-may-view-an-app"
    assert github_slug("State & restarts") == "state--restarts"


def test_every_relative_link_resolves_inside_the_repository():
    broken = [problem for path in DOCS for problem in broken_links(path)]
    assert not broken, "broken links:\n" + "\n".join(broken)
