"""The job summary a CI run leaves (GitHub's `GITHUB_STEP_SUMMARY`, where set): what
happened, the app's status across environments, and its URLs. Markdown."""

from __future__ import annotations

from typing import Any

from conveyor.ci.check import CheckStep

_MARK = {True: "✅", False: "❌", None: "➖"}


def summary(
    app: str,
    headline: str,
    *,
    steps: list[CheckStep] | None = None,
    status: dict[str, Any] | None = None,
) -> str:
    lines = [f"## Conveyor: {app}", "", headline, ""]
    if steps:
        lines += ["| check | result | detail |", "|---|---|---|"]
        for step in steps:
            first = step.detail.strip().splitlines()[-1] if step.detail.strip() else ""
            lines.append(f"| {step.name} | {_MARK[step.ok]} | {_cell(first)} |")
        lines.append("")
    if status is not None:
        cells = {c["environment"]: c for c in status["cells"] if c["app"] == app}
        lines += ["| environment | bundle | verified | URL |", "|---|---|---|---|"]
        for environment in status["environments"]:
            cell = cells.get(environment["name"])
            url = f"{environment['url']}/{app}/" if environment.get("url") else ""
            if cell is None:
                lines.append(f"| {environment['name']} | – | | {url} |")
            else:
                verified = "✓" if cell["verified"] else ""
                lines.append(
                    f"| {environment['name']} | `{cell['alias']}` (release {cell['release']}) "
                    f"| {verified} | {url} |"
                )
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")[:120]
