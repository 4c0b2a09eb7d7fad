"""What the CLI says when it cannot reach a server, and the server's refusal to expose tokens
in clear text beyond loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conveyor.api.server import ServerSettings, check_exposure
from conveyor.cli import main
from conveyor.errors import InvalidInput


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the socket is closed


def test_an_unreachable_server_is_named_with_how_to_start_one(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVEYOR_CREDENTIALS", str(tmp_path / "credentials.json"))
    address = f"http://127.0.0.1:{closed_port()}"
    code = main(["--server", address, "status"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"could not reach the Conveyor server at {address}" in err
    assert "conveyor serve" in err and "Traceback" not in err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "conveyor.example.com"])
def test_the_server_refuses_plain_http_beyond_loopback(host):
    with pytest.raises(InvalidInput, match="refusing to listen on .* without TLS"):
        check_exposure(ServerSettings(home=Path("/nonexistent"), host=host))
    check_exposure(ServerSettings(home=Path("/nonexistent"), host=host, behind_proxy=True))
    check_exposure(
        ServerSettings(
            home=Path("/nonexistent"), host=host, tls_cert=Path("c.pem"), tls_key=Path("k.pem")
        )
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_needs_no_tls(host):
    check_exposure(ServerSettings(home=Path("/nonexistent"), host=host))


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("https://apps.example.org", "give ENV=URL"),
        ("prod=apps.example.org", "an http:// or https:// address with a host"),
        ("prod=https://apps.example.org/?x=1", "an http:// or https:// address with a host"),
        ("prod=https://ana:secret@apps.example.org", "an http:// or https:// address"),
        ("prod=ftp://apps.example.org", "an http:// or https:// address with a host"),
    ],
)
def test_a_bad_app_url_is_refused_before_the_server_starts(capsys, tmp_path, value, says):
    code = main(["serve", "--home", str(tmp_path / "home"), "--app-url", value])
    err = capsys.readouterr().err
    assert code == 64 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "home").exists()


def test_an_app_url_for_an_environment_the_server_lacks_is_refused(capsys, tmp_path):
    code = main(
        [
            "serve", "--home", str(tmp_path / "home"), "--port", str(closed_port()),
            "--app-url", "staging=https://apps.example.org",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err, err
    assert "--app-url names staging, but this server's environments are dev, test, prod" in err
