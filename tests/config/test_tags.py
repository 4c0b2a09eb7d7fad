"""`!env` reads the environment when used (point 7); `!expr` is refused where it matters (8)."""

from __future__ import annotations

import pytest

from conveyor import config
from conveyor.errors import ConfigSyntaxError, UnresolvedValue


def test_env_reads_the_variable(write, monkeypatch):
    write("default:\n  password: !env DB_PASSWORD\n")
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    assert config.get("password") == "s3cret"


def test_env_is_read_at_each_get_not_at_parse(write, monkeypatch):
    write("default:\n  password: !env DB_PASSWORD\n")
    monkeypatch.setenv("DB_PASSWORD", "one")
    assert config.get("password") == "one"
    monkeypatch.setenv("DB_PASSWORD", "two")
    assert config.get("password") == "two"


def test_a_variable_unset_after_a_get_is_an_error_at_the_next(write, monkeypatch):
    write("default:\n  password: !env DB_PASSWORD\n")
    monkeypatch.setenv("DB_PASSWORD", "one")
    assert config.get("password") == "one"
    monkeypatch.delenv("DB_PASSWORD")
    with pytest.raises(UnresolvedValue):
        config.get("password")


def test_fallback_may_itself_read_the_environment(write, monkeypatch):
    write("default:\n  url: !env [PRIMARY_URL, !env [SECONDARY_URL, local]]\n")
    assert config.get("url") == "local"
    monkeypatch.setenv("SECONDARY_URL", "secondary")
    assert config.get("url") == "secondary"
    monkeypatch.setenv("PRIMARY_URL", "primary")
    assert config.get("url") == "primary"


def test_env_fallback_keeps_its_yaml_type(write, monkeypatch):
    write("default:\n  port: !env [DB_PORT, 5432]\n  host: !env [DB_HOST, localhost]\n")
    assert config.get("port") == 5432
    assert config.get("host") == "localhost"
    monkeypatch.setenv("DB_PORT", "6543")
    assert config.get("port") == "6543"  # the environment gives strings


def test_env_set_to_empty_is_set(write, monkeypatch):
    write("default:\n  token: !env [TOKEN, fallback]\n")
    monkeypatch.setenv("TOKEN", "")
    assert config.get("token") == ""


def test_env_in_lists_and_nested_mappings(write, monkeypatch):
    write("default:\n  db:\n    hosts: [!env PRIMARY, replica]\n")
    monkeypatch.setenv("PRIMARY", "primary-db")
    assert config.get("db")["hosts"] == ("primary-db", "replica")


def test_missing_env_names_variable_section_and_key(write, monkeypatch):
    monkeypatch.delenv("PROD_DB_PASSWORD", raising=False)
    write("default:\n  db: {}\nprod:\n  db:\n    password: !env PROD_DB_PASSWORD\n")
    with pytest.raises(UnresolvedValue) as caught:
        config.get(config="prod")
    message = str(caught.value)
    assert "line 5" in message
    assert "key 'db.password' in section 'prod'" in message
    assert "$PROD_DB_PASSWORD" in message
    assert "!env [PROD_DB_PASSWORD, VALUE]" in message


def test_missing_env_inherited_from_default_says_which_section_uses_it(write, monkeypatch):
    monkeypatch.delenv("API_TOKEN", raising=False)
    write("default:\n  token: !env API_TOKEN\nprod: {}\n")
    with pytest.raises(UnresolvedValue, match="in section 'default' \\(used by 'prod'\\)"):
        config.get(config="prod")


def test_env_only_resolved_for_the_active_section(write, monkeypatch):
    monkeypatch.delenv("PROD_ONLY", raising=False)
    write("default:\n  url: local\ntest:\n  url: t\nprod:\n  secret: !env PROD_ONLY\n")
    assert config.get("url") == "local"
    assert config.get("url", config="test") == "t"
    with pytest.raises(UnresolvedValue):
        config.get("url", config="prod")


@pytest.mark.parametrize(
    "tag",
    ["!env", "!env ''", "!env [A]", "!env [A, b, c]", "!env {a: b}", "!env [3, x]"],
)
def test_malformed_env_tag_is_a_syntax_error_with_line(write, tag):
    write(f"default:\n  x: 1\n  value: {tag}\n")
    with pytest.raises(ConfigSyntaxError) as caught:
        config.get()
    assert caught.value.line == 3
    assert "!env takes a variable name" in str(caught.value)


def test_expr_in_the_active_section_is_a_clear_error(write):
    write('default:\n  url: local\nprod:\n  key: !expr paste0("k", Sys.getenv("KEY"))\n')
    with pytest.raises(UnresolvedValue) as caught:
        config.get("url", config="prod")
    message = str(caught.value)
    assert "line 4" in message
    assert "key 'key' in section 'prod' is an R expression" in message
    assert "does not run R code" in message
    assert "!env NAME" in message
    assert '!expr Sys.getenv("NAME")' in message


def test_expr_in_other_sections_is_harmless(write):
    write('default:\n  url: local\nprod: {}\nrstudio:\n  key: !expr paste0("k", Sys.time())\n')
    assert config.get("url") == "local"
    assert config.get("url", config="prod") == "local"


def test_unknown_tag_is_a_syntax_error(write):
    write("default:\n  a: !secret x\n")
    with pytest.raises(ConfigSyntaxError, match="line 2"):
        config.get()
