"""The control API fuzzed through its own OpenAPI document with schemathesis: a real
`conveyor serve` with an app deployed, every operation called as the first admin with data
generated from the document (valid and invalid), and each answer checked:

- no server error (5xx);
- every error in the one shape, ``{"error": {"code": ..., "message": ...}}`` and nothing else;
- status code, content type and body as the document declares them.

Bounded: a few examples per operation and mode, no shrinking (a failure is reported as found,
with the request to reproduce it), long polls (``wait``) cut to nothing, each request at most
30 seconds.

Destructive operations run last, in an order where each leaves the next one something to test:
revoking roles (it may take the admin's own), setting a password, disabling users (the admin,
once the fuzzer has made another), applying environments (it may replace dev, test and prod),
and last revoking tokens (it may revoke the admin's own token, after which every answer is a
401, still checked). Fixtures do not leak between tests: the server is this test's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .server import Server, make_app

pytestmark = pytest.mark.e2e

EXAMPLES = 8  # per operation, per way of choosing path parameters, per generation mode

#: Operations that change what later ones need, run after all others, in this order.
LAST = (
    ("DELETE", "/api/v1/users/{name}/roles/{role}"),
    ("PUT", "/api/v1/users/{name}/password"),
    ("POST", "/api/v1/users/{name}/disable"),
    ("POST", "/api/v1/environments/apply"),
    ("DELETE", "/api/v1/tokens/{token_id}"),
)

#: What exists on the server, so that generated requests reach past "not found" too.
KNOWN = {
    "app": "hello",
    "environment": "dev",
    "name": "GREETING",
    "release_id": 1,
    "operation_id": 1,
    "run_id": 1,
    "ref": None,  # the deployed bundle's id, found once it is deployed
    "role": "dev:viewer",
    "token_id": 1,
}

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def error_shape_problem(response: requests.Response) -> str | None:
    """Why an error answer is not in the one error shape, or None when it is."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"an error answer that is not JSON: {response.text[:200]!r}"
    if not (isinstance(body, dict) and set(body) == {"error"}):
        return f"an error answer not in the error shape: {body!r:.300}"
    error = body["error"]
    if not (
        isinstance(error, dict)
        and set(error) == {"code", "message"}
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
        and error["code"]
        and error["message"]
    ):
        return f"an error answer not in the error shape: {body!r:.300}"
    return None


def test_the_api_survives_fuzzing_and_answers_as_its_document_says(tmp_path: Path):
    server = Server(tmp_path)
    try:
        server.start()
        deployed = server.cli("deploy", str(make_app(tmp_path, "v1")))
        assert deployed.code == 0, deployed
        credentials = json.loads((tmp_path / "credentials.json").read_text())
        token = credentials["servers"][server.url]["token"]
        problems = fuzz(server, token)
    finally:
        server.stop()
    assert not problems, f"{len(problems)} problem(s):\n\n" + "\n\n".join(problems)


def fuzz(server: Server, token: str) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    known = dict(KNOWN)
    status = requests.get(f"{server.url}/api/v1/status", headers=headers, timeout=30).json()
    known["ref"] = status["cells"][0]["bundle"]
    me = requests.get(f"{server.url}/api/v1/me", headers=headers, timeout=30).json()
    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    order = {key: index for index, key in enumerate(LAST)}
    operations.sort(key=lambda op: order.get((op.method.upper(), op.path), -1))
    session = requests.Session()
    problems: dict[str, str] = {}

    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        fixed = {n: known[n] for n in names if known.get(n) is not None}
        if "{name}" in operation.path and "/users/" in operation.path:
            fixed["name"] = me["name"]  # the admin: a user who exists
        choices = [None, fixed] if fixed else [None]
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            for path_parameters in choices:
                try:
                    strategy = operation.as_strategy(mode, path_parameters=path_parameters)
                except Exception as exc:  # an operation schemathesis cannot negate, e.g.
                    if mode is schemathesis.GenerationMode.NEGATIVE:
                        continue
                    raise AssertionError(f"{operation.label}: {exc}") from exc
                run_cases(strategy, operation.label, server.url, session, headers, problems)
    return list(problems.values())


def run_cases(
    strategy: st.SearchStrategy[Any],
    label: str,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
    problems: dict[str, str],
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(case: schemathesis.Case) -> None:
        if case.query and "wait" in case.query:
            case.query["wait"] = 0  # long polls hold a request up to 30 s: not what is tested
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        curl = case.as_curl_command(headers=headers)
        shape = error_shape_problem(response)
        if shape:
            problems.setdefault(f"{label} shape", f"{label}: {shape}\n  {curl}")
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:  # one failure per check
            for failure in group.exceptions:
                title = failure.title
                key = f"{label} {title}"
                problems.setdefault(
                    key,
                    f"{label}: {title} (HTTP {response.status_code})\n"
                    f"  {failure.message[:600]}\n"
                    f"  answer: {response.text[:300]}\n  {curl}",
                )

    try:
        one()
    except Unsatisfiable:  # nothing to make invalid (e.g. an operation without parameters)
        pass
