"""get(): the whole configuration or one value, the active name, and which file is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import config
from conveyor.errors import ConfigFileNotFound

BASIC = """
default:
  url: http://localhost:8000
  port: 8000
  db:
    host: localhost
prod:
  url: https://api.example.com
"""


def test_get_without_value_returns_read_only_mapping_with_active_name_and_file(write):
    path = write(BASIC)
    resolved = config.get(config="prod")
    assert isinstance(resolved, config.Config)
    assert dict(resolved) == {
        "url": "https://api.example.com",
        "port": 8000,
        "db": resolved["db"],
    }
    assert dict(resolved["db"]) == {"host": "localhost"}
    assert resolved.active == "prod"
    assert resolved.section == "prod"
    assert resolved.file == str(path)
    with pytest.raises(TypeError):
        resolved["url"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        resolved["db"]["host"] = "x"


def test_lists_come_back_as_tuples_and_to_dict_gives_plain_copies(write):
    write("default:\n  hosts: [a, b]\n  db: {host: h}\n")
    resolved = config.get()
    assert resolved["hosts"] == ("a", "b")
    plain = resolved.to_dict()
    assert plain == {"hosts": ["a", "b"], "db": {"host": "h"}}
    plain["hosts"].append("c")
    plain["db"]["host"] = "changed"
    assert config.get()["hosts"] == ("a", "b")
    assert config.get("db")["host"] == "h"


def test_repr_lists_keys_but_never_values(write):
    write("default:\n  password: hunter2\n")
    text = repr(config.get())
    assert "password" in text
    assert "hunter2" not in text


def test_get_value_returns_top_level_value_or_none_or_default(write):
    write(BASIC)
    assert config.get("url") == "http://localhost:8000"
    assert config.get("missing") is None
    assert config.get("missing", default=42) == 42
    assert config.get("port", default=1) == 8000


def test_a_null_value_is_present_not_missing(write):
    write("default:\n  token: ~\n")
    assert config.get("token", default="fallback") is None


def test_active_name_precedence(write, monkeypatch):
    write("default: {who: default}\na: {who: a}\nb: {who: b}\nc: {who: c}\n")
    assert config.get("who") == "default"
    monkeypatch.setenv("R_CONFIG_ACTIVE", "c")
    assert config.get("who") == "c"
    monkeypatch.setenv("CONVEYOR_ENV", "b")
    assert config.get("who") == "b"
    assert config.get("who", config="a") == "a"


def test_empty_active_variable_counts_as_unset(write, monkeypatch):
    write("default: {who: default}\nc: {who: c}\n")
    monkeypatch.setenv("CONVEYOR_ENV", "")
    monkeypatch.setenv("R_CONFIG_ACTIVE", "c")
    assert config.get("who") == "c"


def test_is_active(monkeypatch):
    assert config.is_active("default")
    monkeypatch.setenv("R_CONFIG_ACTIVE", "test")
    assert config.is_active("test")
    monkeypatch.setenv("CONVEYOR_ENV", "prod")
    assert config.is_active("prod")
    assert not config.is_active("test")
    assert config.active_name() == "prod"


def test_file_precedence(write, monkeypatch):
    write("default: {from: config.yml}\n")
    r_file = write("default: {from: r}\n", "r.yml")
    conveyor_file = write("default: {from: conveyor}\n", "conveyor.yml")
    argument = write("default: {from: argument}\n", "arg.yml")
    assert config.get("from") == "config.yml"
    monkeypatch.setenv("R_CONFIG_FILE", str(r_file))
    assert config.get("from") == "r"
    monkeypatch.setenv("CONVEYOR_CONFIG_FILE", str(conveyor_file))
    assert config.get("from") == "conveyor"
    assert config.get("from", file=argument) == "argument"
    assert config.get("from", file=str(argument)) == "argument"


def test_file_found_in_a_parent_directory(write, tmp_path, monkeypatch):
    path = write("default: {found: yes}\n")
    deep = tmp_path / "app" / "src" / "pages"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    resolved = config.get()
    assert resolved["found"] is True
    assert resolved.file == str(path)


def test_relative_file_argument_searches_parents_by_its_name(write, tmp_path, monkeypatch):
    write("default: {name: settings}\n", "settings.yml")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert config.get("name", file="settings.yml") == "settings"


def test_not_found_names_the_file_and_says_parents_were_searched(tmp_path):
    with pytest.raises(ConfigFileNotFound) as caught:
        config.get()
    message = str(caught.value)
    assert "'config.yml'" in message
    assert str(tmp_path) in message
    assert "or any parent directory" in message


def test_not_found_without_parent_search_says_so(write, tmp_path, monkeypatch):
    write("default: {}\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(ConfigFileNotFound) as caught:
        config.get(use_parent=False)
    message = str(caught.value)
    assert str(tmp_path / "sub" / "config.yml") in message
    assert "parent directories were not searched" in message


def test_not_found_names_the_variable_that_chose_the_file(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CONVEYOR_CONFIG_FILE", "elsewhere.yml")
    with pytest.raises(ConfigFileNotFound, match=r"'elsewhere.yml' \(from CONVEYOR_CONFIG_FILE\)"):
        config.get()
