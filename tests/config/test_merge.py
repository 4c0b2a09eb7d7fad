"""Sections merge over `default`; `inherits:`; and merge() itself (points 4, 5 and 9)."""

from __future__ import annotations

import warnings

import pytest

from conveyor import config
from conveyor.errors import ConfigStructureError, ConfigWarning, InheritanceError


def test_default_section_is_required(write):
    write("prod:\n  url: x\n")
    with pytest.raises(ConfigStructureError) as caught:
        config.get()
    assert "no `default` section" in str(caught.value)
    assert "sections: prod" in str(caught.value)


def test_section_merges_over_default_mappings_recursively(write):
    write(
        """
        default:
          db: {host: localhost, port: 5432, options: {sslmode: disable, timeout: 5}}
          title: Forecast
        prod:
          db: {host: prod-db, options: {sslmode: require}}
        """
    )
    resolved = config.get(config="prod").to_dict()
    assert resolved == {
        "db": {
            "host": "prod-db",
            "port": 5432,
            "options": {"sslmode": "require", "timeout": 5},
        },
        "title": "Forecast",
    }


def test_scalars_and_lists_from_the_specific_section_replace(write):
    write(
        """
        default:
          hosts: [a, b, c]
          retries: 3
          mode: {nested: true}
        prod:
          hosts: [p]
          retries: 5
          mode: flat
        """
    )
    resolved = config.get(config="prod").to_dict()
    assert resolved["hosts"] == ["p"]
    assert resolved["retries"] == 5
    assert resolved["mode"] == "flat"


def test_null_in_a_section_replaces_the_default(write):
    write("default:\n  proxy: http://proxy:3128\nprod:\n  proxy: ~\n")
    assert config.get("proxy", config="prod") is None


def test_empty_section_is_default(write):
    write("default:\n  a: 1\nprod:\n")
    assert config.get(config="prod").to_dict() == {"a": 1}


INHERITING = """
default:
  level: default
  only_default: d
  db: {host: localhost, port: 1}
development:
  level: development
  only_dev: dev
  db: {host: dev-db}
staging:
  level: staging
  only_staging: s
  db: {port: 2}
test:
  inherits: [development, staging]
  only_test: t
qa:
  inherits: test
  level: qa
"""


def test_inherits_priority_own_then_first_parent_then_later_then_default(write):
    write(INHERITING)
    resolved = config.get(config="test").to_dict()
    assert resolved == {
        "level": "development",  # first parent beats later parent and default
        "only_default": "d",
        "only_dev": "dev",
        "only_staging": "s",
        "only_test": "t",
        "db": {"host": "dev-db", "port": 2},
    }
    assert "inherits" not in resolved


def test_inherits_resolves_recursively_and_own_values_win(write):
    write(INHERITING)
    resolved = config.get(config="qa")
    assert resolved["level"] == "qa"
    assert resolved["only_test"] == "t"
    assert resolved["only_dev"] == "dev"
    assert "inherits" not in resolved


def test_inherits_takes_a_single_name(write):
    write("default: {a: 1}\nbase: {a: 2, b: 2}\nchild: {inherits: base, b: 3}\n")
    assert config.get(config="child").to_dict() == {"a": 2, "b": 3}


def test_sources_record_the_section_each_value_came_from(write):
    write(INHERITING)
    sources = config.get(config="qa").sources
    assert sources["level"] == "qa"
    assert sources["only_test"] == "test"
    assert sources["only_dev"] == "development"
    assert sources["db.port"] == "staging"
    assert sources["only_default"] == "default"


def test_cycle_is_an_error_naming_the_section(write):
    write("default: {}\na: {inherits: b}\nb: {inherits: c}\nc: {inherits: a}\n")
    with pytest.raises(InheritanceError) as caught:
        config.get(config="a")
    assert "section 'a' inherits from itself (a -> b -> c -> a)" in str(caught.value)
    assert caught.value.cycle == ("a", "b", "c")


def test_self_inheritance_is_a_cycle(write):
    write("default: {}\nprod: {inherits: prod}\n")
    with pytest.raises(InheritanceError, match="section 'prod' inherits from itself"):
        config.get(config="prod")


def test_inheriting_from_a_missing_section_names_it(write):
    write("default: {}\nprod:\n  inherits: staging\n")
    with pytest.raises(InheritanceError) as caught:
        config.get(config="prod")
    message = str(caught.value)
    assert "line 2" in message
    assert "section 'prod' inherits from 'staging'" in message
    assert "sections: default, prod" in message


@pytest.mark.parametrize("bad", ["3", "[a, 3]", "{x: 1}", "''"])
def test_inherits_must_be_names(write, bad):
    write(f"default: {{}}\nprod:\n  inherits: {bad}\n")
    with pytest.raises(ConfigStructureError, match="`inherits` in section 'prod' must be"):
        config.get(config="prod")


def test_merge_is_exported_with_the_same_rules():
    base = {"db": {"host": "h", "port": 1}, "hosts": ["a", "b"], "x": 1}
    overlay = {"db": {"host": "p"}, "hosts": ["c"], "y": None}
    merged = config.merge(base, overlay)
    assert merged == {"db": {"host": "p", "port": 1}, "hosts": ["c"], "x": 1, "y": None}
    # inputs unchanged, result shares nothing mutable with them
    assert base == {"db": {"host": "h", "port": 1}, "hosts": ["a", "b"], "x": 1}
    merged["db"]["port"] = 9
    merged["hosts"].append("d")
    assert base["db"]["port"] == 1
    assert overlay["hosts"] == ["c"]


def test_merge_mapping_replaces_scalar_and_scalar_replaces_mapping():
    assert config.merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert config.merge({"a": {"b": 2}}, {"a": 1}) == {"a": 1}


@pytest.mark.parametrize("empty", ["", "~", "null", "{}"])
def test_empty_default_section_is_an_empty_mapping(write, empty):
    write(f"default: {empty}\nprod:\n  url: remote\n")
    assert config.get(config="prod").to_dict() == {"url": "remote"}
    assert config.get().to_dict() == {}
    assert config.get("url", default="none") == "none"


DEFAULT_INHERITS = """
default:
  inherits: base
  url: local
base:
  url: from-base
  only_base: 1
prod:
  workers: 2
"""


def test_inherits_in_default_is_ignored_with_a_warning(write):
    # As R's config::get() does: it never follows `inherits:` of the `default` section.
    write(DEFAULT_INHERITS)
    with pytest.warns(ConfigWarning, match=r"`inherits:` in the `default` section is ignored"):
        resolved = config.get(config="prod")
    assert resolved.to_dict() == {"url": "local", "workers": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file, not at every read
        assert config.get().to_dict() == {"url": "local"}
        assert config.get("only_base", config="base") == 1


def test_inherits_in_default_cannot_make_a_cycle(write):
    write("default:\n  inherits: prod\n  a: 1\nprod:\n  inherits: default\n  b: 2\n")
    with pytest.warns(ConfigWarning):
        assert config.get(config="prod").to_dict() == {"a": 1, "b": 2}
