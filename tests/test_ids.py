"""Ids (contract §1): typed, opaque, and in the order they were made."""

from __future__ import annotations

from onderwijsregio.ids import has_shape, new_id


def test_ids_made_in_one_process_keep_their_order_within_a_millisecond() -> None:
    made = [new_id("att") for _ in range(5000)]  # many share a millisecond
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(has_shape(i, "att") and not has_shape(i, "int") for i in made[:10])
