"""Docs stay true to the code: the CLI reference is generated, every command is explained
somewhere besides it, and the error tree drawn in errors.py lists every error."""

from __future__ import annotations

import importlib.util
import inspect
import re
import runpy
from pathlib import Path

import click

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


# --- Commands and options: every `conveyor ...` and `--option` the docs name exists ---

# `conveyor` as a command word: at the start, after a shell separator, a prompt or a path.
_CONVEYOR = re.compile(r"(?:^|(?<=[\s(`'\"=|;&$])|(?<=/bin/))conveyor(?=[ \t]+\S)")
_SEPARATORS = {"|", "||", "&&", ";", "&", ")", ">", "2>&1", "\\"}
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_COMMAND_WORD = re.compile(r"[a-z][a-z0-9-]*")
# Blocks that show output (or have no language), not commands: only their lines that start
# with `conveyor` (or a `$ conveyor` prompt) are commands.
_OUTPUT_BLOCKS = {"", "text", "json", "pycon", "sql"}
# Options the docs name that belong to other programs, each with its program.
OTHER_PROGRAMS_OPTIONS = {
    "--hash": "pip's requirements format (conveyor.lock lines)",
    "--no-build": "uv pip sync",
    "--preview-features": "uv export",
    "--workers": "gunicorn",
    "--threads": "gunicorn",
    "--tb": "pytest",
}


def _options(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(n for n in (*param.opts, *param.secondary_opts) if n.startswith("--"))
    return names


def _all_options() -> set[str]:
    from conveyor.cli import cli

    module = _reference_module()
    found: set[str] = set()
    for _, command in module["commands"](cli, ("conveyor",)):  # type: ignore[operator]
        found |= _options(command)
    return found | {"--version"}


def _takes_value(command: click.Command, option: str) -> bool:
    for param in command.params:
        if isinstance(param, click.Option) and option in param.opts:
            return not param.is_flag and not param.count
    return False


def check_invocation(words: list[str]) -> list[str]:
    """What in `conveyor WORDS...` does not exist in the CLI: commands, then options of the
    command the words reach (options of the groups above it count too)."""
    from conveyor.cli import cli

    problems: list[str] = []
    command: click.Command = cli
    path = ["conveyor"]
    chain: list[click.Command] = [cli]
    index = 0
    while isinstance(command, click.Group) and index < len(words):
        word = words[index]
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if name.startswith("--") and name not in _options(command) | {"--version"}:
                problems.append(f"`{' '.join(path)}` has no option {name}")
            index += 2 if "=" not in word and _takes_value(command, name) else 1
            continue
        alternatives = word.split("|")
        if alternatives[0] in command.commands:
            for other in alternatives[1:]:
                if other not in command.commands:
                    problems.append(f"no command `{' '.join([*path, other])}`")
            command = command.commands[alternatives[0]]
            path.append(alternatives[0])
            chain.append(command)
            index += 1
            continue
        if type(command).parse_args is not click.Group.parse_args:
            # A group that takes its default command's arguments (`conveyor bundle PATH`).
            context = click.Context(command, resilient_parsing=True)
            command.parse_args(context, list(words[index:]))
            chosen = getattr(context, "_protected_args", [])
            if chosen and chosen[0] in command.commands and chosen[0] != word:
                command = command.commands[chosen[0]]
                path.append(chosen[0])
                chain.append(command)
                continue
        if _COMMAND_WORD.fullmatch(word):
            problems.append(f"no command `{' '.join([*path, word])}`")
        return problems
    known = set().union(*(_options(c) for c in chain))
    for word in words[index:]:
        for name in _OPTION.findall(word.split("=", 1)[0]):
            if name not in known:
                problems.append(f"`{' '.join(path)}` has no option {name}")
    return problems


def _command_words(text: str) -> list[list[str]]:
    """The words after each `conveyor` command word in TEXT, up to a shell separator."""
    found = []
    for match in _CONVEYOR.finditer(text):
        before = text[: match.start()].split()
        if before and before[-1].strip("'\"(") in (
            "from",
            "import",
        ):  # Python: `from conveyor import x`
            continue
        words = []
        for word in text[match.end() :].split():
            if word in _SEPARATORS or word.startswith(("#", "`", ">")):
                break
            words.append(word.strip("\"'`,;:)"))
        found.append(words)
    return found


def _named_in(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each code line (continuations joined) and inline code span of PATH."""
    prose, code = _split_code(path.read_text())
    named = list(_inline_spans(prose))
    pending: tuple[int, str] | None = None
    for number, line, language in code:
        # In output, a command is `conveyor` and one space; a benchmark's table row names the
        # `conveyor` target in a column (more spaces), which is no command.
        if language in _OUTPUT_BLOCKS and not re.match(r"\s*(\$\s+)?conveyor \S", line):
            continue
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1])
            continue
        pending = None
        named.append((number, line))
    return named


def unknown_commands_and_options(path: Path) -> list[str]:
    every_option = _all_options()
    # The benchmarks' own options (docs/performance.md) are checked against bench/.
    bench = "\n".join(p.read_text() for p in sorted((ROOT / "bench").glob("*.py")))
    foreign = set(OTHER_PROGRAMS_OPTIONS) | {
        name for name in _OPTION.findall(bench) if f'"{name}"' in bench
    }
    problems = []
    for line, text in _named_in(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        invocations = _command_words(text)
        for words in invocations:
            problems += [f"{where}: {problem}" for problem in check_invocation(words)]
        if not invocations:
            # An option named on its own (`--keep-releases`) must be some command's option;
            # lines that run other programs (`uv pip install --system`) are not ours.
            stripped = text.strip().lstrip("$ ").strip()
            if stripped.startswith("-") or (
                stripped.startswith("conveyor") and " " not in stripped
            ):
                for name in _OPTION.findall(stripped):
                    if name not in every_option and name not in foreign:
                        problems.append(f"{where}: no conveyor command has option {name}")
    return problems


def test_the_checker_reports_missing_commands_and_options():
    assert check_invocation(["deploy", "app", "--env", "dev"]) == []
    assert check_invocation(["bundle", "examples/x", "--json"]) == []
    assert check_invocation(["config", "show|diff|check"]) == []
    assert check_invocation(["deploy", "app", "--no-such"]) == [
        "`conveyor deploy` has no option --no-such"
    ]
    assert check_invocation(["frobnicate"]) == ["no command `conveyor frobnicate`"]
    assert check_invocation(["users", "frob"]) == ["no command `conveyor users frob`"]
    assert _command_words("from conveyor import config") == []
    assert _command_words("$ conveyor gc --dry-run | head") == [["gc", "--dry-run"]]


def test_commands_and_options_named_in_the_docs_exist():
    problems = [
        problem
        for path in DOCS
        if path.name != "cli.md"  # generated from the CLI itself
        for problem in unknown_commands_and_options(path)
    ]
    assert not problems, "docs name what the CLI does not have:\n" + "\n".join(problems)


# --- "Not yet" lists: what they say is missing is missing ---

# Features the code has, each with the module that implements it (checked to exist), by the
# words a "not yet" statement would use for it.
IMPLEMENTED = {
    "drift check": "conveyor.runtime.drift",
    "data connection": "conveyor.data.connections",
    "output location": "conveyor.data.outputs",
    "host-based routing": "conveyor.runtime.proxy_routes",
    "cron schedule": "conveyor.services.schedules",
    "sleep": "conveyor.runtime.sleeper",
    "retention": "conveyor.services.retention",
    "single sign-on": "conveyor.console.oidc",
    "openid connect": "conveyor.console.oidc",
    "sandbox": "conveyor.runtime.sandbox",
    "postgresql": "conveyor.storage.database",
}
_NOT_YET = re.compile(r"not (?:yet|implemented)", re.IGNORECASE)


def not_yet_statements(text: str) -> list[tuple[int, str]]:
    """(line, text) of every paragraph or list item that says something is not there yet,
    and of every item under a "Not yet" heading."""
    prose, _ = _split_code(text)
    found = []
    under_not_yet = False
    for start, paragraph in _paragraphs(prose):
        heading = _HEADING.match(paragraph)
        if heading:
            under_not_yet = bool(
                _NOT_YET.search(heading.group(2)) or "not yet" in heading.group(2).lower()
            )
            continue
        items = re.split(r"\n(?=\s*[-*] |\s*\d+\. )", paragraph)
        line = start
        for item in items:
            if under_not_yet or _NOT_YET.search(item):
                found.append((line, " ".join(item.split())))
            line += item.count("\n") + 1
    return found


def false_not_yet(path: Path, text: str | None = None) -> list[str]:
    problems = []
    for line, statement in not_yet_statements(path.read_text() if text is None else text):
        for words, module in IMPLEMENTED.items():
            if words in statement.lower():
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: says {words!r} is missing, but {module} "
                    f"implements it: {statement[:120]}"
                )
        for words in _command_words(statement):
            if words and not check_invocation(words[:2]):
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: says `conveyor {' '.join(words)}` is "
                    f"missing, but the CLI has it"
                )
    return problems


def test_implemented_features_name_real_modules():
    missing = [m for m in IMPLEMENTED.values() if importlib.util.find_spec(m) is None]
    assert not missing


def test_not_yet_lists_do_not_list_what_exists():
    old_runtime_md = (
        "## 9. Limits\n\n- **Not implemented yet.** Drift checks of runtimes against their "
        "locks, data connection\n  settings and output locations in the app's environment, "
        "host-based routing, and a Kubernetes\n  backend.\n"
    )
    assert len(false_not_yet(ROOT / "docs" / "runtime.md", old_runtime_md)) == 4
    problems = [problem for path in DOCS for problem in false_not_yet(path)]
    assert not problems, "a 'not yet' names what exists:\n" + "\n".join(problems)
