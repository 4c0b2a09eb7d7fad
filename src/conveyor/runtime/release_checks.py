"""A release's checks against its own address, before it takes traffic: smoke expectations
(GET a path, expect a status and text) and the bundle's own tests (a command, sandboxed like
the app, with CONVEYOR_APP_URL)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from conveyor.domain.apps import SmokeCheck
from conveyor.domain.releases import CheckKind, CheckResult
from conveyor.runtime.steps import run_tests_command

_OUTPUT_LIMIT = 64 * 1024


def smoke(expectations: Sequence[SmokeCheck], base: str, log: Callable[[str], None]) -> CheckResult:
    lines, passed = [], True
    for expectation in expectations:
        status, body = http_get(base + expectation.path, timeout=30)
        ok = status == expectation.status and (
            expectation.contains is None or expectation.contains in body
        )
        detail = f"GET {expectation.path} -> {status or 'no answer'}"
        if expectation.contains is not None and status is not None:
            found = "found" if expectation.contains in body else "NOT found"
            detail += f", {expectation.contains!r} {found}"
        lines.append(("ok   " if ok else "FAIL ") + detail)
        passed = passed and ok
    for line in lines:
        log(f"smoke: {line}")
    return CheckResult(CheckKind.SMOKE, passed, "\n".join(lines))


def tests(
    command: str | None,
    base: str,
    app_dir: Path,
    app_env: Mapping[str, str],
    timeout: float,
    confine: Callable[[list[str]], list[str]],
    log: Callable[[str], None],
) -> CheckResult:
    command = command or ""
    log(f"tests: {command} (CONVEYOR_APP_URL={base})")
    env = {**app_env, "CONVEYOR_APP_URL": base}
    # The app's files are read-only to it: no bytecode or pytest cache is written there.
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    env.setdefault("PYTEST_ADDOPTS", "-p no:cacheprovider")
    result = run_tests_command(command, cwd=app_dir, env=env, timeout=timeout, confine=confine)
    # Passing tests: their summary line. Failing ones: enough to see why, right here.
    shown = 2 if result.passed else 40
    for line in result.output.strip().splitlines()[-shown:]:
        log(f"tests: {line}")
    return CheckResult(CheckKind.TESTS, result.passed, result.output)


def http_get(url: str, timeout: float) -> tuple[int | None, str]:
    request = urllib.request.Request(url, headers={"User-Agent": "conveyor-check"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read(_OUTPUT_LIMIT).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(_OUTPUT_LIMIT).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException):
        return None, ""  # no answer, or not HTTP (something else holds the port)
