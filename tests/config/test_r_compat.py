"""A config.yml written for R's `config` package works unchanged: the shapes its users write
(colours and shapes per environment, `inherits:` chains, R expressions in sections Python does
not use, R_CONFIG_ACTIVE and R_CONFIG_FILE)."""

from __future__ import annotations

import pytest

from conveyor import config

R_STYLE = """
default:
  color: "red"
  shape: "square"

development:
  shape: "triangle"

test:
  inherits: development
  color: "blue"

production:
  color: "green"
  shape: "circle"

east:
  shape: "hexagon"

debug:
  log: true

west:
  inherits: [east, debug]

rsession:
  color: !expr paste("orange")
"""


@pytest.fixture(autouse=True)
def r_style_file(write):
    write(R_STYLE)


@pytest.mark.parametrize(
    ("active", "color", "shape"),
    [
        ("default", "red", "square"),
        ("production", "green", "circle"),
        ("development", "red", "triangle"),
        ("test", "blue", "triangle"),
        ("west", "red", "hexagon"),
    ],
)
def test_values_per_configuration(monkeypatch, active, color, shape):
    monkeypatch.setenv("R_CONFIG_ACTIVE", active)
    assert config.get("color") == color
    assert config.get("shape") == shape


def test_multiple_parents_are_all_merged(monkeypatch):
    monkeypatch.setenv("R_CONFIG_ACTIVE", "west")
    assert config.get().to_dict() == {"color": "red", "shape": "hexagon", "log": True}


def test_r_config_file_variable_and_alternate_file(write, monkeypatch):
    other = write('default:\n  color: "purple"\n', "conf/alternate.yml")
    monkeypatch.setenv("R_CONFIG_FILE", str(other))
    assert config.get("color") == "purple"


def test_expr_sections_do_not_disturb_others():
    assert config.get("color", config="production") == "green"
