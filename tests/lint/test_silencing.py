"""`# conveyor: ignore` silences a line."""

from __future__ import annotations

from .conftest import findings


def test_a_comment_at_the_end_of_the_line_silences_it():
    assert not findings('URL = "https://forecast.example.com"  # conveyor: ignore\n')
    assert not findings('URL = "https://forecast.example.com"  # Conveyor:Ignore\n')
    assert not findings('URL = "https://forecast.example.com"  # noqa: E501  # conveyor: ignore\n')


def test_only_its_own_line_is_silenced():
    found = findings(
        """
        A = "https://a.example.com"  # conveyor: ignore
        B = "https://b.example.com"
        """
    )
    assert [f.literal for f in found] == ["https://b.example.com"]


def test_in_a_multi_line_statement_the_first_line_or_the_literal_s_line_silences():
    assert not findings(
        """
        response = httpx.get(  # conveyor: ignore
            "https://forecast.example.com",
            timeout=10,
        )
        other = httpx.get(
            "https://forecast.example.com",  # conveyor: ignore
            timeout=10,
        )
        """
    )
    found = findings(
        """
        response = httpx.get(
            "https://forecast.example.com",
            timeout=10,
        )  # conveyor: ignore
        """
    )
    assert len(found) == 1  # the closing line is neither


def test_the_words_inside_a_string_do_not_silence():
    assert findings('x = ["# conveyor: ignore", "https://forecast.example.com"]\n')


def test_a_similar_comment_does_not_silence():
    assert findings('URL = "https://forecast.example.com"  # conveyor: ignore-me\n')
    assert findings('URL = "https://forecast.example.com"  # conveyor ignore\n')
