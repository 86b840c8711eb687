"""The event id index: one key per id, whichever way it comes in (Arrow or Python, bulk or one)."""

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_lab.determinism import random_ids, seeded_ids
from cqrs_lab.eventids import EventIdIndex, id_key, id_keys

HEX = "0123456789abcdef"
IDS = (
    st.text(alphabet=HEX, min_size=32, max_size=32)  # the common shape: keyed from its words
    | st.text(alphabet=HEX + "AFg-é", min_size=30, max_size=33)  # 32 bytes or not
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # (Arrow needs UTF-8)
)


def one_by_one(ids: list[str]) -> list[int]:
    return [id_key(i) for i in ids]


@settings(max_examples=300, deadline=None)
@given(st.lists(IDS, max_size=150), st.integers(0, 5))
def test_ids_keyed_in_bulk_get_the_keys_they_get_one_by_one(ids: list[str], cut: int) -> None:
    ids = ids * (1 + 64 // max(len(ids), 1))  # 64 or more: keyed by numpy (fewer: one by one)
    expected = one_by_one(ids)
    assert id_keys(ids).tolist() == expected
    assert id_keys(pa.array(ids, pa.string())).tolist() == expected
    padded = pa.array(["x" * cut, *ids], pa.string()).slice(1)  # an array with an offset
    assert id_keys(padded).tolist() == expected


def test_fresh_ids_in_bulk_are_keyed_from_their_words_and_all_differ() -> None:
    made = [random_ids() for _ in range(5000)]
    seeded = seeded_ids(7)
    given = [seeded() for _ in range(5000)]
    keys = id_keys(pa.array(made + given, pa.string()))
    assert keys.tolist() == one_by_one(made + given)
    assert len(set(keys.tolist())) == 10_000
    assert id_key(made[0]) != hash(made[0])  # (the words' key, not Python's hash)


def test_ids_that_differ_only_in_their_last_digits_get_different_keys() -> None:
    ids = [f"{'0' * 16}{n:016x}" for n in range(3000)]
    ids += [f"{n:016x}{'f' * 16}" for n in range(3000)]
    assert len(set(id_keys(ids).tolist())) == 6000


def test_an_id_added_from_arrow_is_found_when_given_as_text_and_back(tmp_path: Path) -> None:
    index = EventIdIndex(tmp_path)
    index._in_files = lambda event_id: True  # type: ignore[method-assign]  # hits count as held
    stored = pa.array([os.urandom(16).hex() for _ in range(2000)], pa.string())
    index.add(stored)
    index.add(["plain-id", "0123456789abcdef0123456789ABCDEF"])
    fresh = [random_ids() for _ in range(1500)]
    assert index.first_known(fresh) is None
    assert index.first_known([*fresh, stored[1234].as_py()]) == stored[1234].as_py()
    assert index.first_known(pa.array([*fresh[:70], "plain-id"])) == "plain-id"
    assert index.first_known(["0123456789abcdef0123456789ABCDEF"]) is not None
    assert index.first_known(np.array(fresh[:3]).tolist()) is None
