"""``# conveyor: ignore``: a comment that silences `conveyor lint` on its line. Comments are
found with Python's tokenizer, so the words inside a string do not count."""

from __future__ import annotations

import io
import re
import tokenize

IGNORE = re.compile(r"#.*\bconveyor:\s*ignore\b(?![-\w])", re.IGNORECASE)


def ignored_lines(source: str) -> frozenset[int]:
    """The numbers (from 1) of the lines whose comment says ``conveyor: ignore``."""
    if "conveyor" not in source.lower():
        return frozenset()  # the tokenizer is slow; most files have no such comment
    lines = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT and IGNORE.search(token.string):
                lines.add(token.start[0])
    except (tokenize.TokenError, SyntaxError):
        pass  # only for source ast could not parse either, which is not linted
    return frozenset(lines)
