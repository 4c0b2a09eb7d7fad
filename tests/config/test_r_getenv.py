"""`!expr Sys.getenv(...)`, R's idiomatic way to read a secret, is read without running R: a
strict grammar accepts `Sys.getenv("NAME")`, `Sys.getenv("NAME", "fallback")` and
`Sys.getenv("NAME", unset = "fallback")`, with R's semantics; every other expression is still
refused with the same message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import config
from conveyor.config.rexpr import Getenv, parse_getenv
from conveyor.errors import ConfigStructureError, InheritanceError, UnresolvedValue


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ('Sys.getenv("DB_PASSWORD")', Getenv("DB_PASSWORD")),
        ("Sys.getenv('DB_PASSWORD')", Getenv("DB_PASSWORD")),
        ('  Sys.getenv ( "DB_PASSWORD" )  ', Getenv("DB_PASSWORD")),
        ('Sys.getenv("DB_HOST", "localhost")', Getenv("DB_HOST", "localhost", True)),
        ("Sys.getenv('DB_HOST','local host')", Getenv("DB_HOST", "local host", True)),
        ('Sys.getenv("DB_HOST", unset = "localhost")', Getenv("DB_HOST", "localhost", True)),
        ('Sys.getenv("DB_HOST",unset="")', Getenv("DB_HOST", "", True)),
    ],
)
def test_the_grammar_accepts_the_common_forms(code, expected):
    assert parse_getenv(code) == expected


@pytest.mark.parametrize(
    "code",
    [
        "Sys.getenv(DB_PASSWORD)",  # a variable, not a string
        "Sys.getenv('A', unset = 'it''s')",
        'Sys.getenv("DB_PASSWORD", NA)',
        'Sys.getenv("DB_PASSWORD", unset = NA)',
        'Sys.getenv("A", "b", "c")',
        'Sys.getenv("A", names = TRUE)',
        'Sys.getenv(x = "A")',
        'Sys.getenv("A\\n")',  # escapes
        "Sys.getenv(\"A')",  # mismatched quotes
        'Sys.getenv("")',
        'Sys.getenv("1A")',
        "Sys.getenv()",
        'sys.getenv("A")',
        'base::Sys.getenv("A")',
        'Sys.getenv("A"); system("rm -rf /")',
        'Sys.getenv("A") # comment',
        'paste0(Sys.getenv("A"), "x")',
        'Sys.getenv(paste0("A", "B"))',
        'system("id")',
    ],
)
def test_the_grammar_refuses_everything_else(code):
    assert parse_getenv(code) is None


def test_everything_else_is_refused_with_the_usual_message(write):
    write('default:\n  key: !expr Sys.getenv("A"); system("id")\n')
    with pytest.raises(UnresolvedValue) as caught:
        config.get()
    message = str(caught.value)
    assert "line 2" in message and "is an R expression" in message
    assert "Conveyor does not run R code" in message


CONFIG = """\
default:
  password: !expr Sys.getenv("DB_PASSWORD")
  host: !expr Sys.getenv('DB_HOST', "localhost")
  port: !expr Sys.getenv("DB_PORT", unset = "5432")
  nested:
    - !expr Sys.getenv("DB_HOST")
"""


def test_r_semantics_unset_gives_empty_or_the_fallback(write, monkeypatch):
    write(CONFIG)
    for name in ("DB_PASSWORD", "DB_HOST", "DB_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert config.get().to_dict() == {
        "password": "",
        "host": "localhost",
        "port": "5432",  # R's Sys.getenv gives strings, fallbacks included
        "nested": [""],
    }


def test_r_semantics_set_even_to_empty_gives_the_value(write, monkeypatch):
    write(CONFIG)
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    monkeypatch.setenv("DB_HOST", "")  # set to empty: "", not the fallback
    monkeypatch.setenv("DB_PORT", "6543")
    assert config.get().to_dict() == {
        "password": "s3cret",
        "host": "",
        "port": "6543",
        "nested": [""],
    }
    monkeypatch.setenv("DB_PASSWORD", "changed")  # read again at the next get()
    assert config.get("password") == "changed"


INHERITS = """\
default: {region: eu}
east: {region: us-east}
west: {region: us-west}
prod:
  inherits: !expr Sys.getenv("PROD_PARENT", "east")
staging:
  inherits: [!expr Sys.getenv("STAGING_PARENT"), west]
"""


def test_inherits_read_with_sys_getenv(write, monkeypatch):
    write(INHERITS)
    monkeypatch.delenv("PROD_PARENT", raising=False)
    monkeypatch.delenv("STAGING_PARENT", raising=False)
    assert config.get("region", config="prod") == "us-east"  # the fallback
    assert config.get("region", config="staging") == "us-west"  # "" names no parent
    monkeypatch.setenv("PROD_PARENT", "west")
    monkeypatch.setenv("STAGING_PARENT", "east")
    assert config.get("region", config="prod") == "us-west"  # seen without editing the file
    assert config.get("region", config="staging") == "us-east"


def test_inherits_read_from_a_variable_naming_no_section(write, monkeypatch):
    write(INHERITS)
    monkeypatch.setenv("PROD_PARENT", "north")
    with pytest.raises(InheritanceError) as caught:
        config.get(config="prod")
    assert 'inherits from \'north\' (read by Sys.getenv("PROD_PARENT", "east") at line 5)' in (
        str(caught.value)
    )


def test_other_expressions_in_inherits_are_a_structure_error(write):
    write("default: {}\nprod:\n  inherits: !expr paste0('e', 'ast')\n")
    with pytest.raises(ConfigStructureError, match="must be a section name"):
        config.get(config="prod")


APP = """\
import json
from conveyor import config

print(json.dumps(config.get().to_dict()))
"""


def run_app(tmp_path: Path, **variables: str) -> dict[str, object]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONVEYOR_", "R_CONFIG", "DB_", "PROD_", "STAGING_"))
    }
    env.update(variables)
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_an_app_reads_the_same_file_as_r_would(tmp_path):
    (tmp_path / "config.yml").write_text(
        CONFIG + "prod:\n  inherits: !expr Sys.getenv('PROD_PARENT')\nfast: {port: '1'}\n"
    )
    (tmp_path / "app.py").write_text(APP)
    assert run_app(tmp_path) == {
        "password": "",
        "host": "localhost",
        "port": "5432",
        "nested": [""],
    }
    assert run_app(
        tmp_path,
        DB_PASSWORD="s3cret",
        DB_HOST="",
        CONVEYOR_ENV="prod",
        PROD_PARENT="fast",
    ) == {"password": "s3cret", "host": "", "port": "1", "nested": [""]}
