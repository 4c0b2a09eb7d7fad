"""A typed HTTP client for the control API; the CLI's only way to the server.

Errors come back as the same exception types the server raised (by the stable ``code`` of the
error shape), so the CLI maps them to exit codes without parsing messages."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from conveyor import errors
from conveyor.credentials import server_and_token
from conveyor.errors import error_code

_BY_CODE: dict[str, type[errors.ConveyorError]] = {
    error_code(kind): kind
    for kind in vars(errors).values()
    if isinstance(kind, type) and issubclass(kind, errors.ConveyorError)
}


class Client:
    def __init__(self, server: str | None = None, token: str | None = None, timeout: float = 60):
        chosen, saved = server_and_token(server)
        self.server = chosen
        self.token = token or saved
        self.timeout = timeout

    # --- plumbing --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send a request; the JSON answer (None when empty), or the error it stands for."""
        payload = self._send(method, path, body, data, headers, query, timeout)
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError:  # e.g. a sign-in page of a proxy, or another web server
            raise errors.ConveyorError(
                f"the server at {self.server} did not answer as a Conveyor server does (its "
                f"answer to {method} /api/v1{path} is not JSON). Point at a Conveyor server "
                "with --server or CONVEYOR_SERVER"
            ) from None

    def request_text(self, method: str, path: str, *, query: dict[str, Any] | None = None) -> str:
        return self._send(method, path, None, None, None, query, None).decode()

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        data: bytes | None,
        headers: dict[str, str] | None,
        query: dict[str, Any] | None,
        timeout: float | None,
    ) -> bytes:
        url = f"{self.server}/api/v1{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        sent = dict(headers or {})
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:  # noqa: S310
                payload: bytes = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise errors.ServerUnreachable(
                f"could not reach the Conveyor server at {self.server} ({reason}). Start one "
                "with `conveyor serve`, or point at another with --server or CONVEYOR_SERVER"
            ) from None
        return payload

    def _error(self, exc: urllib.error.HTTPError) -> errors.ConveyorError:
        try:
            shape = json.loads(exc.read())["error"]
            code, message = str(shape["code"]), str(shape["message"])
        except (ValueError, KeyError, TypeError):
            return errors.ConveyorError(f"the server at {self.server} answered HTTP {exc.code}")
        if exc.code == 401 and not self.token:
            message += f" (no token saved for {self.server}; run `conveyor login`)"
        return _BY_CODE.get(code, errors.ConveyorError)(message)

    # --- reading ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/health", timeout=5)
        return result

    def environments(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/environments")
        return result

    def status(self, app: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/status", query={"app": app})
        return result

    def history(self, app: str, environment: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET", f"/apps/{_q(app)}/releases", query={"environment": environment}
        )
        return result

    def release(self, release_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/releases/{release_id}")
        return result

    def diff(self, app: str, left: str, right: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET", f"/apps/{_q(app)}/diff", query={"left": left, "right": right}
        )
        return result

    def has_bundle(self, app: str, bundle_id: str) -> bool:
        """Whether the server has the bundle and its files (gc may have removed them)."""
        try:
            found = self.request("GET", f"/apps/{_q(app)}/bundles/{bundle_id}")
        except errors.NotFound:
            return False
        return not (isinstance(found, dict) and found.get("removed_at"))

    def variables(self, app: str, environment: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET", f"/apps/{_q(app)}/environments/{_q(environment)}/variables"
        )
        return result

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/audit", query={"limit": limit})
        return result

    def verify_audit(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/audit/verify")
        return result

    # --- changing --------------------------------------------------------------------------

    def upload(self, archive: Path, provenance: dict[str, Any]) -> dict[str, Any]:
        encoded = base64.urlsafe_b64encode(json.dumps(provenance).encode()).decode()
        result: dict[str, Any] = self.request(
            "POST",
            "/bundles",
            data=archive.read_bytes(),
            headers={"Content-Type": "application/gzip", "Conveyor-Provenance": encoded},
            timeout=600,
        )
        return result

    def deploy(self, app: str, bundle: str, environment: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            f"/apps/{_q(app)}/environments/{_q(environment)}/deploys",
            body={"bundle": bundle},
        )
        return result

    def promote(self, app: str, to: str | None, bundle: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/apps/{_q(app)}/promotions", body={"bundle": bundle}, query={"to": to}
        )
        return result

    def rollback(self, app: str, environment: str, to_release: int | None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            f"/apps/{_q(app)}/environments/{_q(environment)}/rollbacks",
            body={"to_release": to_release},
        )
        return result

    def approve(
        self, app: str, environment: str, bundle: str | None, comment: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            f"/apps/{_q(app)}/environments/{_q(environment)}/approvals",
            body={"bundle": bundle, "comment": comment},
        )
        return result

    def set_variable(
        self, app: str, environment: str, name: str, value: str, secret: bool
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT",
            f"/apps/{_q(app)}/environments/{_q(environment)}/variables/{_q(name)}",
            body={"value": value, "secret": secret},
        )
        return result

    def unset_variable(self, app: str, environment: str, name: str) -> None:
        self.request(
            "DELETE", f"/apps/{_q(app)}/environments/{_q(environment)}/variables/{_q(name)}"
        )

    def environments_state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/environments/state")
        return result

    def apply_environments(
        self, environments: list[dict[str, Any]], expected: str, source: str
    ) -> dict[str, Any]:
        body = {"environments": environments, "expected": expected, "source": source}
        result: dict[str, Any] = self.request("POST", "/environments/apply", body=body)
        return result

    def data_check(self, environment: str | None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET", "/data/check", query={"environment": environment}, timeout=120
        )
        return result

    def drift(self, environment: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", "/drift", query={"environment": environment}, timeout=300
        )
        return result

    def repair(self, environment: str | None) -> dict[str, Any]:
        """Start repairing (an operation to follow, as a deploy)."""
        result: dict[str, Any] = self.request(
            "POST", "/repairs", query={"environment": environment}
        )
        return result

    # --- users, tokens, keys ----------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/me")
        return result

    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/users")
        return result

    def add_user(self, name: str, roles: list[str] | None, admin: bool) -> dict[str, Any]:
        body = {"name": name, "roles": roles, "admin": admin}
        result: dict[str, Any] = self.request("POST", "/users", body=body)
        return result

    def grant(self, name: str, role: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/users/{_q(name)}/roles", body={"role": role}
        )
        return result

    def revoke(self, name: str, role: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/users/{_q(name)}/roles/{_q(role)}")
        return result

    def disable_user(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/users/{_q(name)}/disable")
        return result

    def create_token(self, user: str | None, expires_days: int | None) -> dict[str, Any]:
        path = f"/users/{_q(user)}/tokens" if user else "/tokens"
        result: dict[str, Any] = self.request("POST", path, body={"expires_days": expires_days})
        return result

    def tokens(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/tokens")
        return result

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/tokens/{token_id}")
        return result

    def set_password(self, name: str, password: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT", f"/users/{_q(name)}/password", body={"password": password}
        )
        return result

    def set_groups(self, name: str, groups: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT", f"/users/{_q(name)}/groups", body={"groups": groups}
        )
        return result

    def set_access(self, app: str, environment: str, access: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT",
            f"/apps/{_q(app)}/environments/{_q(environment)}/access",
            body={"access": access},
        )
        return result

    def access(self, app: str) -> dict[str, str]:
        result: dict[str, str] = self.request("GET", f"/apps/{_q(app)}/access")
        return result

    def schedules(self, app: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", f"/apps/{_q(app)}/schedules")
        return result

    def set_schedule(self, app: str, environment: str, cron: str, timezone: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT",
            f"/apps/{_q(app)}/environments/{_q(environment)}/schedule",
            body={"cron": cron, "timezone": timezone},
        )
        return result

    def unset_schedule(self, app: str, environment: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "DELETE", f"/apps/{_q(app)}/environments/{_q(environment)}/schedule"
        )
        return result

    def email(self, app: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/apps/{_q(app)}/email")
        return result

    def set_email(self, app: str, environment: str, to: list[str], on: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT",
            f"/apps/{_q(app)}/environments/{_q(environment)}/email",
            body={"to": to, "on": on},
        )
        return result

    def unset_email(self, app: str, environment: str, on: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "DELETE",
            f"/apps/{_q(app)}/environments/{_q(environment)}/email",
            query={"on": on} if on else None,
        )
        return result

    def run(self, app: str, environment: str, run_id: int) -> dict[str, Any]:
        """One run, with its whole log (the server sends it a page at a time)."""
        path = f"/apps/{_q(app)}/environments/{_q(environment)}/runs/{run_id}"
        page: dict[str, Any] = self.request("GET", path)
        log = list(page["log"])
        while page["log"]:
            page = self.request("GET", path, query={"after": log[-1]["id"]})
            log += page["log"]
        return {**page, "log": log}

    def start_run(self, app: str, environment: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/apps/{_q(app)}/environments/{_q(environment)}/runs"
        )
        return result

    def runs(self, app: str, environment: str, limit: int = 50) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET",
            f"/apps/{_q(app)}/environments/{_q(environment)}/runs",
            query={"limit": limit},
        )
        return result

    def follow_run(
        self, app: str, environment: str, run_id: int, on_line: Callable[[str], None]
    ) -> dict[str, Any]:
        """Pass each log line of the run to ``on_line``; return the run once it has ended."""
        after = 0
        path = f"/apps/{_q(app)}/environments/{_q(environment)}/runs/{run_id}"
        while True:
            page: dict[str, Any] = self.request("GET", path, query={"after": after})
            for line in page["log"]:
                on_line(line["line"])
                after = line["id"]
            if page["state"] != "running" and not page["log"]:
                return page
            if not page["log"]:
                time.sleep(0.3)

    def gc(self, dry_run: bool) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", "/gc", body={"dry_run": dry_run}, timeout=max(self.timeout, 900)
        )
        return result

    def rotate_secrets_key(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/secrets/rotate-key")
        return result

    def export_audit(self, since: int) -> Iterator[str]:
        """The audit events after ``since``, as JSON lines."""
        text = self.request_text("GET", "/audit/export", query={"since": since})
        yield from text.splitlines(keepends=True)

    # --- following -------------------------------------------------------------------------

    def follow(self, operation_id: int, on_line: Callable[[str], None]) -> dict[str, Any]:
        """Pass each log line of the operation to ``on_line`` as it is written; return the
        finished operation."""
        after = 0
        while True:
            page = self.request(
                "GET",
                f"/operations/{operation_id}/log",
                query={"after": after, "wait": 10},
                timeout=30,
            )
            for line in page["lines"]:
                on_line(line["line"])
                after = line["id"]
            operation: dict[str, Any] = page["operation"]
            if operation["state"] != "running" and not page["lines"]:
                return operation

    def logs(
        self, app: str, environment: str, *, follow: bool = False, release: int | None = None
    ) -> Iterator[str]:
        """The app's output in the environment; with ``follow``, keeps yielding new output."""
        offset = 0
        path = f"/apps/{_q(app)}/environments/{_q(environment)}/logs"
        while True:
            page = self.request(
                "GET",
                path,
                query={"after": offset, "release": release, "wait": 10 if follow else 0},
                timeout=30,
            )
            release = page["release"]
            if page["text"]:
                yield page["text"]
            offset = page["offset"]
            if not follow:
                return
            if not page["text"]:
                time.sleep(0.1)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")
