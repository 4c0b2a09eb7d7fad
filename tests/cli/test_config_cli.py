"""`conveyor config show | diff | check`, through the same entry point the console script uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.cli import main

APP_CONFIG = """
default:
  forecast_url: http://localhost:8000/forecast
  db:
    host: localhost
    password: !env [DB_PASSWORD, devpass]
  api_token: dev-token
  workers: 1
development:
  debug: true
test:
  inherits: development
  db:
    host: test-db
prod:
  forecast_url: https://forecast.example.com
  db:
    host: prod-db
    password: !env DB_PASSWORD
  api_token: prod-token-value
  workers: 4
"""


@pytest.fixture(autouse=True)
def app_config(write, monkeypatch):
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    write(APP_CONFIG)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_prints_values_with_their_source(capsys):
    code, out, err = run(capsys, "config", "show", "--env", "test")
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert lines["db.host"].split()[1:] == ["test-db", "test"]
    assert lines["forecast_url"].split()[1:] == ["http://localhost:8000/forecast", "default"]
    assert lines["debug"].split()[1:] == ["true", "inherited", "from", "development"]


def test_show_masks_env_values_and_secret_looking_keys(capsys, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    code, out, _ = run(capsys, "config", "show", "--env", "prod")
    assert code == 0
    assert "hunter2" not in out
    assert "prod-token-value" not in out
    assert "******** (!env DB_PASSWORD, set)" in out
    api_line = next(line for line in out.splitlines() if line.startswith("api_token"))
    assert "********" in api_line


def test_show_says_when_an_env_variable_is_not_set(capsys):
    _, out, _ = run(capsys, "config", "show", "--env", "prod")
    assert "!env DB_PASSWORD, not set)" in out
    _, out, _ = run(capsys, "config", "show", "--env", "test")
    assert "!env DB_PASSWORD, not set, fallback used)" in out


def test_show_one_key_or_prefix(capsys):
    code, out, _ = run(capsys, "config", "show", "db", "--env", "prod")
    assert code == 0
    keys = [line.split()[0] for line in out.splitlines()[2:]]
    assert keys == ["db.host", "db.password"]


def test_show_unknown_key_is_an_error_listing_keys(capsys):
    code, _, err = run(capsys, "config", "show", "nope", "--env", "prod")
    assert code == 1
    assert "no key 'nope' in section 'prod'" in err
    assert "forecast_url" in err


def test_show_json(capsys):
    code, out, _ = run(capsys, "config", "show", "--env", "prod", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["active"] == "prod"
    values = {v["key"]: v for v in data["values"]}
    assert values["workers"] == {"key": "workers", "value": 4, "from": "prod", "masked": False}
    assert values["db.password"]["value"] == "********"
    assert values["db.password"]["env"] == {"variable": "DB_PASSWORD", "state": "not set"}
    assert values["api_token"]["masked"] is True


def test_show_defaults_to_the_active_name(capsys, monkeypatch):
    monkeypatch.setenv("CONVEYOR_ENV", "prod")
    _, out, _ = run(capsys, "config", "show", "--json")
    assert json.loads(out)["section"] == "prod"


def test_show_missing_section_warns_on_stderr(capsys):
    code, out, err = run(capsys, "config", "show", "--env", "staging")
    assert code == 0
    assert "warning:" in err and "no section 'staging'" in err
    assert "[staging]" in out


def test_diff_lists_changed_added_and_missing_keys(capsys):
    code, out, _ = run(capsys, "config", "diff", "test", "prod", "--json")
    assert code == 0
    changes = {c["key"]: c["kind"] for c in json.loads(out)["changes"]}
    assert changes == {
        "forecast_url": "changed",
        "db.host": "changed",
        "db.password": "changed",
        "api_token": "changed",
        "workers": "changed",
        "debug": "missing",
    }


def test_diff_masks_secrets_but_reports_their_change(capsys):
    _, out, _ = run(capsys, "config", "diff", "default", "prod")
    assert "prod-token-value" not in out and "dev-token" not in out
    api_line = next(line for line in out.splitlines() if line.startswith("api_token"))
    assert api_line.split()[1] == "changed"


def test_diff_of_identical_environments(capsys):
    code, out, _ = run(capsys, "config", "diff", "development", "development", "--exit-code")
    assert code == 0
    assert "resolve to the same values" in out


def test_diff_exit_code_flag(capsys):
    code, _, _ = run(capsys, "config", "diff", "test", "prod", "--exit-code")
    assert code == 2


def test_check_passes_a_good_file(capsys, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "x")
    code, out, _ = run(capsys, "config", "check", "--env", "test", "--env", "prod")
    assert code == 0
    assert "ok (4 sections; checked for test, prod)" in out


def test_check_lists_every_problem(write, capsys):
    write(
        """
        default:
          url: local
        a:
          inherits: b
        b:
          inherits: a
        c:
          inherits: nowhere
        d: not a mapping
        prod:
          password: !env PROD_SECRET_FOR_CHECK
          legacy: !expr Sys.time()
        """
    )
    code, _, err = run(capsys, "config", "check", "--env", "prod", "--env", "staging", "--env", "a")
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    text = "\n".join(problems)
    assert "section 'd' must be a mapping" in text
    assert "inherits from itself" in text
    assert "inherits from 'nowhere'" in text
    assert "PROD_SECRET_FOR_CHECK" in text
    assert "!expr Sys.time()" in text
    assert "no section 'staging'" in text
    assert len(problems) == 6, text  # the a/b cycle is reported once


def test_check_without_default_section(write, capsys):
    write("prod: {a: 1}\n")
    code, _, err = run(capsys, "config", "check", "--env", "prod")
    assert code == 1
    assert "no `default` section" in err


def test_check_json(capsys):
    code, out, _ = run(capsys, "config", "check", "--env", "prod", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    assert data["checked"] == ["prod"]
    assert any("DB_PASSWORD" in p for p in data["problems"])


def test_check_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, "config", "check", "--file", str(tmp_path / "none.yml"))
    assert code == 1
    assert "none.yml" in err and "not found" in err


def test_config_error_is_one_line_not_a_traceback(write, capsys):
    write("default:\n  a: [\n")
    code, out, err = run(capsys, "config", "show")
    assert code == 1
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert "line 3" in err


def test_usage_error_exit_code(capsys):
    code, _, err = run(capsys, "config", "diff", "only-one")
    assert code == 64
    assert "Missing argument" in err


def test_console_script_runs_as_a_real_process(tmp_path: Path):
    """The installed `conveyor` command: exit codes and output from a separate process."""
    script = Path(sys.executable).parent / "conveyor"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "R_CONFIG"))}
    env["CONVEYOR_ENV"] = "prod"
    env["DB_PASSWORD"] = "from-the-environment"
    shown = subprocess.run(
        [str(script), "config", "show", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["section"] == "prod"
    assert "from-the-environment" not in shown.stdout
    del env["DB_PASSWORD"]
    checked = subprocess.run(
        [str(script), "config", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 1
    assert "DB_PASSWORD" in checked.stderr


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("db.password", True),
        ("api_keys", True),
        ("DBPassword", True),
        ("authToken", True),
        ("aws.secrets.primary", True),
        ("monkey", False),
        ("keyboard_layout", False),
        ("host", False),
    ],
)
def test_secret_looking_keys(key, secret):
    from conveyor.config.inspection import looks_secret

    assert looks_secret(key) is secret


LISTS_WITH_SECRETS = """
default:
  users:
    - name: ana
      password: hunter2
    - name: bob
      auth: {clientSecret: s3cr3t-bob, role: admin}
  hosts: [web-1, !env [HOST_X, fallback-host]]
  matrix:
    - - {token: tok-abc, host: h1}
  plain: [1, 2]
prod:
  users:
    - name: ana
      password: changed-pw
"""


def test_show_masks_secrets_inside_lists(write, capsys):
    write(LISTS_WITH_SECRETS)
    code, out, _ = run(capsys, "config", "show")
    assert code == 0
    for secret in ("hunter2", "s3cr3t-bob", "tok-abc", "fallback-host"):
        assert secret not in out
    # Only the secret parts are hidden: the rest of each list stays readable.
    assert "ana" in out and "admin" in out and "web-1" in out and "h1" in out
    code, out, _ = run(capsys, "config", "show", "--json")
    values = {v["key"]: v for v in json.loads(out)["values"]}
    assert values["users"]["value"] == [
        {"name": "ana", "password": "********"},
        {"name": "bob", "auth": {"clientSecret": "********", "role": "admin"}},
    ]
    assert values["users"]["masked"] is True
    assert values["hosts"]["value"] == ["web-1", "********"]
    assert values["matrix"]["value"] == [[{"token": "********", "host": "h1"}]]
    assert values["plain"] == {"key": "plain", "value": [1, 2], "from": "default", "masked": False}


def test_diff_masks_secrets_inside_lists_but_reports_their_change(write, capsys):
    write(LISTS_WITH_SECRETS)
    code, out, _ = run(capsys, "config", "diff", "default", "prod", "--json")
    assert code == 0
    assert "hunter2" not in out and "changed-pw" not in out
    changes = {c["key"]: c for c in json.loads(out)["changes"]}
    assert changes["users"]["kind"] == "changed"
    assert changes["users"]["b"]["value"] == [{"name": "ana", "password": "********"}]


def test_check_goes_on_past_broken_sections(write, capsys):
    write(
        """
        default:
          url: !env DEF_URL_FOR_CHECK
        a:
          inherits: missing
          pw: !env A_PW_FOR_CHECK
        b:
          inherits: a
          token: !env B_TOKEN_FOR_CHECK
        """
    )
    code, _, err = run(capsys, "config", "check", "--env", "a", "--env", "b")
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    text = "\n".join(problems)
    assert "section 'a' inherits from 'missing'" in text
    assert "key 'pw' in section 'a' reads $A_PW_FOR_CHECK" in text
    assert "key 'token' in section 'b' reads $B_TOKEN_FOR_CHECK" in text
    assert "key 'url' in section 'default' (used by 'a')" in text
    assert "key 'url' in section 'default' (used by 'b')" in text
    assert "key 'pw' in section 'a' (used by 'b')" in text
    assert len(problems) == 6, text  # the missing parent is reported once


def test_check_goes_on_past_a_broken_default(write, capsys):
    write(
        """
        default:
          inherits: nowhere
          url: local
        prod:
          pw: !env PROD_PW_FOR_CHECK
        """
    )
    code, _, err = run(capsys, "config", "check", "--env", "prod")
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    text = "\n".join(problems)
    assert "`inherits:` in the `default` section is ignored" in text
    assert "key 'pw' in section 'prod' reads $PROD_PW_FOR_CHECK" in text
    assert len(problems) == 2, text


def test_check_reports_tag_and_key_errors_in_every_section(write, capsys):
    write(
        """
        default:
          url: local
        a:
          pw: !env
        b:
          host: one
          host: two
        c:
          token: !env [ONLY_NAME]
        d:
          ok: 1
        """
    )
    code, _, err = run(capsys, "config", "check", "--env", "d")
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(problems) == 3, problems
    assert "line 4" in problems[0] and "in section 'a'" in problems[0]
    assert "!env takes a variable name" in problems[0]
    assert "line 7" in problems[1] and "in section 'b'" in problems[1]
    assert "duplicate key 'host'" in problems[1]
    assert "line 9" in problems[2] and "in section 'c'" in problems[2]
    # get() still refuses the file as a whole, as R does.
    code, _, err = run(capsys, "config", "show", "--env", "d")
    assert code == 1 and "in section 'a'" in err


def test_check_does_not_print_the_value_of_a_broken_section(write, capsys):
    write("default: {}\nprod:\n  - password: hunter2\n")
    code, _, err = run(capsys, "config", "check")
    assert code == 1
    assert "section 'prod' must be a mapping of keys, found a list" in err
    assert "hunter2" not in err


def test_show_warns_about_inherits_in_default(write, capsys):
    write("default:\n  inherits: base\n  url: local\nbase:\n  url: b\n")
    code, out, err = run(capsys, "config", "show")
    assert code == 0
    assert "warning:" in err and "`inherits:` in the `default` section is ignored" in err
    assert "local" in out


def test_dates_are_shown_as_written(write, capsys):
    write("default:\n  released: 2024-01-31\n  at: 2024-01-31T10:00:00Z\n")
    code, out, _ = run(capsys, "config", "show")
    assert code == 0
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
    assert lines == {"released": "2024-01-31", "at": "2024-01-31T10:00:00Z"}
    code, out, _ = run(capsys, "config", "show", "--json")
    values = {v["key"]: v["value"] for v in json.loads(out)["values"]}
    assert values == {"released": "2024-01-31", "at": "2024-01-31T10:00:00Z"}


def test_recursive_alias_is_a_one_line_error(write, capsys):
    write("default:\n  hosts: &h [a, *h]\n")
    for command in (["show"], ["check"]):
        code, _, err = run(capsys, "config", *command)
        assert code == 1
        assert "Traceback" not in err
        assert "contains itself" in err


R_AND_PYTHON = """\
default:
  password: !env DB_PASSWORD
  token: !expr Sys.getenv("API_TOKEN", unset = "dev-token")
  verbose: y
  quoted: 'n'
  enabled: yes
  y: 1
  'n': 2
prod:
  inherits: [staging]
  debug: N
"""


def test_check_warns_with_the_line_where_r_and_python_read_differently(write, capsys, monkeypatch):
    path = write(R_AND_PYTHON, "shared.yml")
    monkeypatch.setenv("DB_PASSWORD", "set")
    code, _, err = run(capsys, "config", "check", "--file", str(path), "--env", "default")
    assert code == 1, err  # Conveyor refuses the missing parent (the warning says R ignores it)
    assert "  - " in err and "inherits from 'staging', which is not a section of this file" in err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    by_line = {int(w.split(", line ")[1].split(":")[0]): w for w in warnings}
    assert sorted(by_line) == [2, 4, 7, 10, 11], warnings
    assert 'R gets the text "DB_PASSWORD"' in by_line[2]
    assert 'Write !expr Sys.getenv("DB_PASSWORD")' in by_line[2]
    assert "the value y is TRUE to R's yaml package" in by_line[4]
    assert "the key y is named 'TRUE' in R" in by_line[7]
    assert (
        "inherits from 'staging', which is not a section: R's config package ignores"
        in (by_line[10])
    )
    assert "the value N is FALSE" in by_line[11]
    # Quoted scalars, `yes` (a boolean to both) and Sys.getenv are read alike: no warning.
    code, out, _ = run(capsys, "config", "check", "--file", str(path), "--env", "default", "--json")
    assert json.loads(out)["warnings"] == [w.removeprefix("warning: ") for w in warnings]


def test_warnings_alone_do_not_fail_the_check(write, capsys):
    path = write("default:\n  verbose: y\n", "shared.yml")
    code, out, err = run(capsys, "config", "check", "--file", str(path), "--env", "default")
    assert code == 0, err
    assert "line 2: the value y is TRUE" in err
    assert ": ok (1 sections" in out


def test_show_names_the_r_expression_of_a_value_read_with_sys_getenv(write, capsys, monkeypatch):
    path = write(R_AND_PYTHON, "shared.yml")
    monkeypatch.delenv("API_TOKEN", raising=False)
    code, out, _ = run(capsys, "config", "show", "token", "--file", str(path))
    assert code == 0
    assert '******** (!expr Sys.getenv("API_TOKEN", unset = "dev-token"), not set, fallback' in out
    monkeypatch.setenv("API_TOKEN", "t-123")
    code, out, _ = run(capsys, "config", "show", "token", "--file", str(path), "--json")
    assert json.loads(out)["values"][0]["env"] == {"variable": "API_TOKEN", "state": "set"}
    assert "t-123" not in out
