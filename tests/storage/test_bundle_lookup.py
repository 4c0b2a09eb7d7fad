"""Looking a bundle up by its id or alias: only hex digits, so no LIKE wildcard can widen it."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidInput, NotFound
from conveyor.storage import catalog

FIRST = "abcdef" + "0" * 58
SECOND = "abcdef" + "1" * 58


def add_bundle(store, bundle_id: str) -> None:
    with store.transaction() as connection:
        catalog.ensure_app(connection, "hello")
        catalog.save_bundle(
            connection,
            bundle_id=bundle_id,
            app="hello",
            blob=bundle_id,
            size=1,
            manifest={"files": []},
            provenance={},
            uploaded_by="ana",
        )


def test_a_bundle_is_found_by_its_alias_or_full_id_in_any_case(store):
    add_bundle(store, FIRST)
    add_bundle(store, SECOND)
    with store.transaction() as connection:
        assert catalog.get_bundle(connection, "hello", "ABCDEF0")["id"] == FIRST
        assert catalog.get_bundle(connection, "hello", SECOND)["id"] == SECOND
        with pytest.raises(InvalidInput, match="matches 2 bundles"):
            catalog.get_bundle(connection, "hello", "abcdef")


@pytest.mark.parametrize("ref", ["abcd_f", "abcde_", "%%%%%%", "abc%00", "abcdeg", FIRST + "0"])
def test_wildcards_and_other_non_hex_refs_are_refused(store, ref):
    add_bundle(store, FIRST)
    with store.transaction() as connection, pytest.raises(InvalidInput, match="not a bundle id"):
        catalog.get_bundle(connection, "hello", ref)


def test_an_unknown_alias_is_not_found(store):
    add_bundle(store, FIRST)
    with store.transaction() as connection, pytest.raises(NotFound, match="has no bundle"):
        catalog.get_bundle(connection, "hello", "fedcba")
