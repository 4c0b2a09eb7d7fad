"""An active name with no section (point 6), and file shape errors (point 10)."""

from __future__ import annotations

import warnings

import pytest

from conveyor import config
from conveyor.errors import (
    ConfigStructureError,
    ConfigSyntaxError,
    ConfigWarning,
    UnknownSection,
)


def test_missing_section_warns_and_uses_default(write):
    write("default: {url: local}\nprod: {url: remote}\n")
    with pytest.warns(ConfigWarning) as caught:
        resolved = config.get(config="staging")
    assert resolved["url"] == "local"
    assert resolved.active == "staging"
    assert resolved.section == "default"
    message = str(caught[0].message)
    assert "no section 'staging'" in message
    assert "sections: default, prod" in message
    assert "strict=True" in message
    # The warning points at the caller of get(), not at Conveyor's internals.
    assert caught[0].filename == __file__
    # ... and is given once per file and name, not at every read.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config.get("url", config="staging") == "local"


def test_missing_section_is_an_error_when_strict(write):
    write("default: {url: local}\nprod: {url: remote}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnknownSection) as caught:
            config.get(config="staging", strict=True)
    assert "no section 'staging' (sections: default, prod)" in str(caught.value)


def test_invalid_yaml_names_file_line_and_column(write):
    path = write("default:\n  url: http://x\n  bad: [unclosed\n")
    with pytest.raises(ConfigSyntaxError) as caught:
        config.get()
    error = caught.value
    assert str(path) in str(error)
    assert error.line == 4
    assert error.column is not None
    assert f"{path}, line 4, column" in str(error)


def test_tab_indentation_names_the_line(write):
    write("default:\n\turl: x\n")
    with pytest.raises(ConfigSyntaxError, match=r"line 2, column 1"):
        config.get()


def test_duplicate_keys_are_an_error(write):
    write("default:\n  url: a\n  url: b\n")
    with pytest.raises(ConfigSyntaxError, match=r"line 3.*duplicate key 'url' \(first on line 2\)"):
        config.get()


def test_non_mapping_top_level_is_an_error(write):
    write("- default\n- prod\n")
    with pytest.raises(ConfigStructureError, match="top level must be a mapping.*found a list"):
        config.get()


def test_empty_file_is_an_error(write):
    write("# nothing yet\n")
    with pytest.raises(ConfigStructureError, match="is empty"):
        config.get()


def test_non_mapping_section_is_an_error(write):
    write("default: {a: 1}\nprod: just a string\n")
    with pytest.raises(ConfigStructureError) as caught:
        config.get()
    assert "line 2: section 'prod' must be a mapping of keys, found str" in str(caught.value)


def test_yaml_keys_stay_strings(write):
    write("default:\n  on: 1\n  yes: 2\n  3: three\n")
    assert config.get().to_dict() == {"on": 1, "yes": 2, "3": "three"}


def test_yaml_anchors_and_merge_keys_work(write):
    write(
        """
        shared: &shared
          timeout: 5
        default:
          <<: *shared
          url: local
        """
    )
    assert config.get().to_dict() == {"timeout": 5, "url": "local"}


def test_non_utf8_file_is_a_clear_error(tmp_path):
    (tmp_path / "config.yml").write_bytes(b"default:\n  name: caf\xe9\n")
    with pytest.raises(ConfigSyntaxError, match="not UTF-8"):
        config.get()
