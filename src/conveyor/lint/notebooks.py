"""A notebook's code cells as Python the `ast` module can read. IPython's own syntax (line magics
``%matplotlib inline``, shell lines ``!pip install x``, ``files = !ls``, help ``df?``) is not
Python: those lines become ``pass`` at the same indentation, so every other line keeps its
number within the cell. A cell that is a cell magic (``%%bash``, ``%%sql``) holds another
language and is left out, except the magics whose body is Python (``%%time``, ...)."""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

#: Cell magics whose body is still Python.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "memit"})
_MAGIC = re.compile(r"^(\s*)(?:[%!]|[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*\s*=\s*[%!])")
_HELP = re.compile(r"^(\s*)[\w.]+\?{1,2}\s*$")


class NotebookError(ValueError):
    """The file is not a notebook `conveyor lint` can read."""


@dataclass(frozen=True)
class CodeCell:
    number: int  # the cell's position in the notebook, from 1, markdown cells counted
    source: str  # Python, line for line as in the cell


def code_cells(text: str) -> list[CodeCell]:
    """The notebook's Python code cells; an empty list for a notebook in another language
    (an R kernel, say). NotebookError when ``text`` is not a notebook."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise NotebookError(f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise NotebookError("not a notebook: the JSON is not an object")
    cells = data.get("cells")
    if cells is None and isinstance(data.get("worksheets"), list):  # nbformat 3
        cells = [c for w in data["worksheets"] if isinstance(w, dict) for c in w.get("cells", [])]
    if not isinstance(cells, list):
        raise NotebookError("not a notebook: no list of cells")
    if not _is_python(data.get("metadata")):
        return []
    found = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", cell.get("input", ""))
        if isinstance(source, list):
            source = "".join(str(part) for part in source)
        if not isinstance(source, str):
            continue
        python = python_source(source)
        if python is not None:
            found.append(CodeCell(number, python))
    return found


def python_source(source: str) -> str | None:
    """The cell's Python, IPython lines made ``pass``; None for a cell magic in another
    language. A cell that is valid Python as written is returned unchanged (a line starting
    with ``%`` may continue an expression: ``(a\\n % b)``)."""
    lines = source.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = first[2:].split(maxsplit=1)[0] if len(first) > 2 else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None
        lines[0] = ""
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(source)
        except (SyntaxError, ValueError, RecursionError):
            pass
        else:
            return source
    result = []
    continued = False
    for line in lines:
        if continued:
            result.append("")
            continued = line.rstrip().endswith("\\")
            continue
        ipython = _MAGIC.match(line) or _HELP.match(line)
        if ipython is not None:
            result.append(f"{ipython.group(1)}pass")
            continued = line.rstrip().endswith("\\")
        else:
            result.append(line)
    return "\n".join(result) + "\n"


def _is_python(metadata: Any) -> bool:
    if not isinstance(metadata, dict):
        return True
    languages = []
    info = metadata.get("language_info")
    if isinstance(info, dict) and isinstance(info.get("name"), str):
        languages.append(info["name"])
    kernel = metadata.get("kernelspec")
    if isinstance(kernel, dict) and isinstance(kernel.get("language"), str):
        languages.append(kernel["language"])
    return all(language.lower() in ("python", "python3", "ipython") for language in languages)
