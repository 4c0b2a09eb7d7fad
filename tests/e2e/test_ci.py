"""`conveyor ci` in real git repositories against a real server, with the variables GitHub
Actions and GitLab CI set: feature -> merge request checks -> test deploys -> main promotes
exactly what test verified."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from .server import CONVEYOR, Server, wait_for

pytestmark = pytest.mark.e2e

SERVE = """
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from forecast import forecast


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = " ".join(map(str, forecast(3))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

CHECK = """
import os, urllib.request

from forecast import forecast

assert len(forecast(3)) == 3, forecast(3)
if os.environ.get("CONVEYOR_APP_URL"):
    with urllib.request.urlopen(os.environ["CONVEYOR_APP_URL"] + "/") as response:
        assert len(response.read().split()) == 3
print("checks passed")
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ana@example.com")
    git(repo, "config", "user.name", "Ana")
    (repo / "conveyor.yml").write_text(
        "name: forecaster\ntype: command\nentrypoint: python serve.py\n"
        "checks:\n  tests: python check.py\n"
    )
    (repo / "serve.py").write_text(textwrap.dedent(SERVE))
    (repo / "check.py").write_text(textwrap.dedent(CHECK))
    (repo / "forecast.py").write_text(
        "def forecast(days):\n    return [100 + d for d in range(days)]\n"
    )
    (repo / "config.yml").write_text("default:\n  horizon: 3\ndev: {}\ntest: {}\nprod: {}\n")
    (repo / ".gitignore").write_text(".conveyor/\n")
    subprocess.run([CONVEYOR, "bundle", str(repo)], check=True, capture_output=True, timeout=300)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "forecaster")
    git(repo, "branch", "test")
    return repo


def ci(server: Server, repo: Path, provider_env: dict[str, str], summary: Path | None = None):
    env = {k: v for k, v in server.env.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI"))}
    env.update(provider_env)
    if not hasattr(server, "ci_token"):
        # CI acts as a user of its own, with the roles its branches need and no more.
        server.ci_token = server.user("ci", "test:developer", "prod:deployer")
    env["CONVEYOR_TOKEN"] = server.ci_token
    if summary is not None:
        env["GITHUB_STEP_SUMMARY"] = str(summary)
    return subprocess.run(
        [CONVEYOR, "ci"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )


def github_push(repo: Path, branch: str) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF": f"refs/heads/{branch}",
        "GITHUB_REF_NAME": branch,
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_SHA": git(repo, "rev-parse", "HEAD"),
    }


def github_pull_request(repo: Path, head: str, base: str) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REF": "refs/pull/7/merge",
        "GITHUB_REF_NAME": "7/merge",
        "GITHUB_HEAD_REF": head,
        "GITHUB_BASE_REF": base,
        "GITHUB_SHA": git(repo, "rev-parse", "HEAD"),
    }


def gitlab_push(repo: Path, branch: str) -> dict[str, str]:
    return {
        "GITLAB_CI": "true",
        "CI": "true",
        "CI_PIPELINE_SOURCE": "push",
        "CI_COMMIT_BRANCH": branch,
        "CI_COMMIT_REF_NAME": branch,
        "CI_COMMIT_SHA": git(repo, "rev-parse", "HEAD"),
    }


def live_bundle(server: Server, environment: str) -> str | None:
    status = server.cli_json("status")
    for cell in status["cells"]:
        if (cell["app"], cell["environment"]) == ("forecaster", environment):
            return str(cell["bundle"])
    return None


def test_feature_to_test_to_main_promotes_exactly_what_test_verified(server, tmp_path):
    repo = make_repo(tmp_path)
    summary = tmp_path / "summary.md"

    # A feature branch with a bug: its merge request's checks fail the job.
    git(repo, "checkout", "-q", "-b", "feature", "test")
    (repo / "forecast.py").write_text(
        "def forecast(days):\n    return [100 + d for d in range(1, days)]\n"
    )
    git(repo, "commit", "-qam", "skip today")
    failing = ci(server, repo, github_pull_request(repo, "feature", "test"), summary)
    assert failing.returncode == 1, failing
    assert "tests: FAILED" in failing.stdout and "AssertionError" in failing.stdout
    assert "❌" in summary.read_text()

    # Fixed: the checks pass; merged into test, the push deploys to test.
    (repo / "forecast.py").write_text(
        "def forecast(days):\n    return [101 + d for d in range(days)]\n"
    )
    git(repo, "commit", "-qam", "start from tomorrow's value")
    passing = ci(server, repo, github_pull_request(repo, "feature", "test"))
    assert passing.returncode == 0, passing
    assert "config: ok" in passing.stdout and "tests: ok" in passing.stdout
    git(repo, "checkout", "-q", "test")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    deployed = ci(server, repo, github_push(repo, "test"), summary)
    assert deployed.returncode == 0, deployed
    assert "is live in test" in deployed.stdout
    assert server.get("test", "forecaster") == (200, "101 102 103")
    in_test = live_bundle(server, "test")

    # test merged into main: the same tree, the same bundle id, promoted to prod.
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "release", "test")
    promoted = ci(server, repo, github_push(repo, "main"), summary)
    assert promoted.returncode == 0, promoted
    assert live_bundle(server, "prod") == in_test
    assert server.get("prod", "forecaster") == (200, "101 102 103")
    assert "| prod |" in summary.read_text()

    # A rerun is a no-op.
    again = ci(server, repo, github_push(repo, "main"))
    assert again.returncode == 0, again
    assert "already live in prod" in again.stdout

    # A commit made directly on main differs from what test verified: refused, and said why.
    (repo / "forecast.py").write_text("def forecast(days):\n    return [999] * days\n")
    git(repo, "commit", "-qam", "hotfix straight on main")
    refused = ci(server, repo, github_push(repo, "main"))
    assert refused.returncode == 3, refused
    assert f"test has bundle {in_test[:10]}" in refused.stderr
    assert "prod takes only bundles that passed test" in refused.stderr, refused.stderr
    assert "which test never ran" in refused.stderr
    assert server.get("prod", "forecaster") == (200, "101 102 103")


def test_gitlab_variables_and_unmapped_branches(server, tmp_path):
    repo = make_repo(tmp_path)
    git(repo, "checkout", "-q", "test")
    deployed = ci(server, repo, gitlab_push(repo, "test"))
    assert deployed.returncode == 0, deployed
    assert live_bundle(server, "test") is not None
    git(repo, "checkout", "-q", "-b", "experiment")
    nothing = ci(server, repo, gitlab_push(repo, "experiment"))
    assert nothing.returncode == 0, nothing
    assert "branch experiment is not mapped to an environment" in nothing.stdout
    request = ci(
        server,
        repo,
        {
            "GITLAB_CI": "true",
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_MERGE_REQUEST_IID": "3",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "experiment",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "test",
            "CI_COMMIT_SHA": git(repo, "rev-parse", "HEAD"),
        },
    )
    assert request.returncode == 0, request
    assert "request #3 from experiment into test" in request.stderr
    outside = subprocess.run(
        [CONVEYOR, "ci"],
        cwd=repo,
        env={k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_"))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert outside.returncode == 1 and "--event push --branch NAME" in outside.stderr


def test_a_bundle_that_failed_in_test_is_refused_by_prod_with_the_reason(server, tmp_path):
    repo = make_repo(tmp_path)
    git(repo, "checkout", "-q", "test")
    assert ci(server, repo, github_push(repo, "test")).returncode == 0
    good = live_bundle(server, "test")
    (repo / "forecast.py").write_text("def forecast(days):\n    return [1]\n")
    git(repo, "commit", "-qam", "broken")
    failed = ci(server, repo, github_push(repo, "test"))
    assert failed.returncode == 1, failed
    assert live_bundle(server, "test") == good
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "release", "test")
    refused = ci(server, repo, github_push(repo, "main"))
    assert refused.returncode == 3, refused
    assert "was not verified in test (its tests check failed in release" in refused.stderr
    assert f"test has bundle {good[:10]}" in refused.stderr
    assert live_bundle(server, "prod") is None


def test_git_driven_mode_releases_new_commits_by_the_same_rules(tmp_path):
    repo = make_repo(tmp_path)
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    server = Server(
        tmp_path,
        "environments:\n  dev: {{port: {dev}}}\n  test: {{port: {test}}}\n"
        "  prod: {{port: {prod}}}\n"
        f"git:\n  - repository: {remote}\n    poll: 0.5\n",
    )
    try:
        server.start()
        wait_for(lambda: live_bundle(server, "test") is not None, "test to be deployed")
        in_test = live_bundle(server, "test")
        # main holds the same commit: prod gets exactly test's bundle.
        wait_for(lambda: live_bundle(server, "prod") == in_test, "prod to be promoted")
        # A commit pushed straight to main is not what test verified: refused, and said so.
        git(repo, "remote", "add", "origin", str(remote))
        (repo / "forecast.py").write_text("def forecast(days):\n    return [7] * days\n")
        git(repo, "commit", "-qam", "straight to main")
        git(repo, "push", "-q", "origin", "main")
        wait_for(
            lambda: any(
                w["branch"] == "main" and w["result"].startswith("refused")
                for w in server.cli_json("status")["git"]
            ),
            "the refusal",
        )
        assert live_bundle(server, "prod") == in_test
        status = server.cli("status")
        assert "WATCHED REPOSITORY" in status.out and "refused" in status.out
        # Once test has verified that same tree, main's commit goes through without a new push.
        git(repo, "checkout", "-q", "test")
        git(repo, "merge", "-q", "--ff-only", "main")
        git(repo, "push", "-q", "origin", "test")
        wait_for(lambda: live_bundle(server, "prod") not in (None, in_test), "prod to take the fix")
        assert live_bundle(server, "prod") == live_bundle(server, "test")
        assert server.get("prod", "forecaster") == (200, "7 7 7")
    finally:
        server.stop()


def test_a_new_user_inits_a_flask_app_and_the_ci_flow_takes_it_to_prod(server, tmp_path):
    repo = tmp_path / "inventory"
    repo.mkdir()
    (repo / "app.py").write_text(
        "from flask import Flask\n\napp = Flask(__name__)\n\n\n"
        '@app.get("/")\ndef index():\n    return "stock: 12 widgets"\n'
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ana@example.com")
    git(repo, "config", "user.name", "Ana")
    initialised = subprocess.run(
        [CONVEYOR, "init"], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert initialised.returncode == 0, initialised
    assert "CONVEYOR_TOKEN" in initialised.stdout  # says which secrets the CI settings need
    assert (repo / ".github" / "workflows" / "conveyor.yml").is_file()
    # The first bundle writes conveyor.lock, which the user commits with the rest.
    subprocess.run([CONVEYOR, "bundle"], cwd=repo, check=True, capture_output=True, timeout=300)
    (repo / ".gitignore").write_text(".conveyor/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "conveyor init")
    git(repo, "branch", "test")

    git(repo, "checkout", "-q", "-b", "feature")
    checked = ci(server, repo, github_pull_request(repo, "feature", "test"))
    assert checked.returncode == 0, checked
    assert "tests: ok" in checked.stdout
    git(repo, "checkout", "-q", "test")
    assert ci(server, repo, github_push(repo, "test")).returncode == 0
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "release", "test")
    promoted = ci(server, repo, github_push(repo, "main"))
    assert promoted.returncode == 0, promoted
    assert server.get("prod", "inventory") == (200, "stock: 12 widgets")
