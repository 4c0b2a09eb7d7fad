"""The server's environments file: environments in order with their policies, and the
repositories git-driven mode watches."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidInput
from conveyor.services.environments_file import read_environments, read_git_sources
from conveyor.services.git_driven import GitSource


def test_environments_take_the_built_in_defaults_for_what_they_leave_out(tmp_path):
    path = tmp_path / "environments.yml"
    path.write_text(
        "environments:\n  dev: {port: 9701}\n  test: {port: 9702}\n"
        "  prod: {port: 9703, approvals: 2, approver_not_deployer: true}\n"
    )
    dev, test, prod = read_environments(path)
    assert (dev.name, dev.position, dev.port, dev.policy.direct_deploys) == ("dev", 0, 9701, True)
    assert test.policy.promotes_from == "dev"
    assert prod.policy.direct_deploys is False and prod.policy.promotes_from == "test"
    assert (prod.policy.approvals, prod.policy.approver_not_deployer) == (2, True)
    assert read_git_sources(path) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("environments: [dev]\n", "expected a mapping `environments:`"),
        ("environments:\n  Dev: {port: 1}\n", "names use lower-case letters"),
        ("environments:\n  dev: {port: 99999}\n", "`port` must be a number"),
        ("environments:\n  dev: {colour: red}\n", "unknown field(s) colour"),
        ("environments:\n  qa: {port: 1, promotes_from: prod}\n", "not an environment declared"),
        ("environments:\n  qa: {}\n", "give it a `port:`"),
        ("environments:\n  dev: {approvals: -1}\n", "`approvals` must be a whole number"),
        ("environments: {dev: {port: 1}\n", "is not valid YAML"),
        (
            "environments:\n  dev: {sleep_after: soon}\n",
            "'soon' is neither a duration",
        ),
    ],
)
def test_environment_mistakes_are_named(tmp_path, text, message):
    path = tmp_path / "environments.yml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_environments(path)


def test_git_sources(tmp_path):
    path = tmp_path / "environments.yml"
    path.write_text(
        "environments:\n  dev: {}\n"
        "git:\n  - repository: /srv/git/app.git\n    path: apps/forecast\n"
        "    branches: {main: prod, test: test}\n    poll: 15\n"
        "  - repository: https://git.example.com/team/report.git\n"
    )
    first, second = read_git_sources(path)
    assert first == GitSource(
        "/srv/git/app.git", "apps/forecast", (("main", "prod"), ("test", "test")), 15.0
    )
    assert second == GitSource("https://git.example.com/team/report.git")


@pytest.mark.parametrize(
    ("git", "message"),
    [
        ("git: {repository: x}\n", "must be a list"),
        ("git:\n  - path: .\n", "give at least `repository"),
        ("git:\n  - {repository: x, colour: red}\n", "unknown field"),
        ("git:\n  - {repository: x, branches: [main]}\n", "`branches` maps branch names"),
        ("git:\n  - {repository: x, poll: 0}\n", "`poll` is seconds"),
    ],
)
def test_git_source_mistakes_are_named(tmp_path, git, message):
    path = tmp_path / "environments.yml"
    path.write_text("environments:\n  dev: {}\n" + git)
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_git_sources(path)


def test_data_connections_and_outputs(tmp_path):
    from conveyor.domain.environments import DataConnection

    path = tmp_path / "environments.yml"
    path.write_text(
        "environments:\n  dev: {port: 0}\n"
        "  test:\n    port: 1\n    outputs: /srv/outputs/test\n    data:\n"
        "      warehouse:\n"
        "        url: postgresql://app:${WAREHOUSE_PASSWORD}@db/warehouse\n"
        "        role: reporting_ro\n"
        "  prod:\n    port: 2\n    data:\n"
        "      warehouse: {url: 'postgresql://owner@db/warehouse', mode: read-write}\n"
    )
    _, test, prod = read_environments(path)
    assert test.data == (
        DataConnection(
            "warehouse",
            "postgresql://app:${WAREHOUSE_PASSWORD}@db/warehouse",
            "read-only",
            "reporting_ro",
        ),
    )
    assert test.outputs == "/srv/outputs/test" and prod.outputs is None
    assert prod.data[0].mode == "read-write"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("data: [warehouse]", "`data` maps connection names"),
        ("data: {w: {mode: read-only}}", "give its `url`"),
        ("data: {w: {url: 'sqlite:///x', mode: rw}}", "`mode` is read-only or read-write"),
        ("data: {w: {url: 'postgresql://app:s3cret@db/w'}}", "the url holds a password"),
        ("data: {w: {url: 'sqlite:///x', colour: red}}", "unknown field"),
        ("outputs: relative/dir", "`outputs` is an absolute directory path"),
    ],
)
def test_data_mistakes_are_named(tmp_path, data, message):
    path = tmp_path / "environments.yml"
    path.write_text("environments:\n  qa: {port: 1, " + data + "}\n")
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[")):
        read_environments(path)
