"""YAML features that must not hurt: recursive and exponential aliases, deep nesting, and
dates, which stay the strings written (as R's yaml package gives them)."""

from __future__ import annotations

import json
import sys

import pytest

from conveyor import config
from conveyor.errors import ConfigSyntaxError


@pytest.mark.parametrize(
    "text",
    [
        "default:\n  hosts: &hosts [a, *hosts]\n",
        "default:\n  db: &db {host: x, again: *db}\n",
        "default:\n  db: &db\n    <<: *db\n    host: x\n",
        "default: &all\n  name: x\n  copy: [*all]\n",
    ],
    ids=["list", "mapping", "merge-key", "section"],
)
def test_recursive_alias_is_a_clear_error_naming_the_file(write, text):
    path = write(text)
    with pytest.raises(ConfigSyntaxError) as caught:
        config.get()
    message = str(caught.value)
    assert str(path) in message
    assert "contains itself" in message
    assert caught.value.line is not None


def test_recursive_alias_names_the_anchor_and_its_line(write):
    write("default:\n  url: x\n  hosts: &hosts\n    - a\n    - *hosts\n")
    with pytest.raises(ConfigSyntaxError) as caught:
        config.get()
    assert "line 3" in str(caught.value)
    assert "&hosts" in str(caught.value)


def billion_laughs(levels: int) -> str:
    lines = ["default:", '  lol0: &lol0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"  lol{level}: &lol{level} [{refs}]")
    lines.append(f"  boom: *lol{levels}")
    return "\n".join(lines) + "\n"


def test_alias_expansion_is_bounded(write):
    # 10**9 strings once expanded; refused before anything copies it.
    path = write(billion_laughs(9))
    with pytest.raises(ConfigSyntaxError) as caught:
        config.get()
    message = str(caught.value)
    assert str(path) in message
    assert "expand to more than" in message
    assert "&lol" in message


def test_moderate_alias_use_is_fine(write):
    write(billion_laughs(3))  # 1,000 values: a normal amount of sharing
    assert len(config.get("boom")) == 10


def test_shared_anchor_used_by_many_sections_is_fine(write):
    sections = "\n".join(f"s{i}:\n  <<: *common\n  n: {i}" for i in range(200))
    write("default: &common\n" + "".join(f"  k{i}: {i}\n" for i in range(50)) + sections)
    assert config.get("k49", config="s199") == 49


@pytest.mark.parametrize("depth", [150, sys.getrecursionlimit()])
def test_absurdly_deep_nesting_is_a_clear_error(write, depth):
    write("default:\n  deep: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigSyntaxError, match="nested"):
        config.get()


def test_reasonable_nesting_is_fine(write):
    write("default:\n  deep: " + "[" * 60 + "1" + "]" * 60 + "\n")
    value = config.get("deep")
    for _ in range(60):
        (value,) = value
    assert value == 1


def test_top_level_merge_keys_still_work(write):
    write("<<: {shared: {a: 1}}\ndefault: {b: 2}\nprod: {c: 3}\n")
    assert config.get(config="shared").to_dict() == {"a": 1, "b": 2}


def test_dates_stay_the_strings_written(write):
    write(
        """
        default:
          released: 2024-01-31
          at: 2024-01-31T10:00:00Z
          spaced: 2024-01-31 10:00:00.5 +02:00
          explicit: !!timestamp 2001-12-14
          dates: [2024-01-01, 2024-02-01]
          quoted: "2024-01-31"
        """
    )
    values = config.get().to_dict()
    assert values == {
        "released": "2024-01-31",
        "at": "2024-01-31T10:00:00Z",
        "spaced": "2024-01-31 10:00:00.5 +02:00",
        "explicit": "2001-12-14",
        "dates": ["2024-01-01", "2024-02-01"],
        "quoted": "2024-01-31",
    }
    assert json.loads(json.dumps(values)) == values
