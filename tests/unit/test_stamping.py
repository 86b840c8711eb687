"""The append hot path: checks, payload encoding, versions and hashes, small and large batches."""

import json
import re
from datetime import UTC, datetime
from enum import IntEnum
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_lab import segments as fmt
from cqrs_lab import stamping
from cqrs_lab.errors import InvalidEventError
from cqrs_lab.eventlog import NewEvent
from cqrs_lab.payloads import payload_texts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ids() -> stamping.IdGenerator:
    numbers = count(1)
    return lambda: f"id-{next(numbers)}"


def canonical(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


TRICKY_PAYLOADS = [
    {},
    {"b": 1, "a": 2},
    {"text": "},{"},  # the batch encoder's boundary, inside a string
    {"items": [{"x": 1}, {"y": 2}]},  # and outside strings, in a nested list
    {"nested": {"z": {}, "a": [{}]}},
    {"unicode": "Zoë 日本 \x1f\n"},
    {"float": 1.5, "none": None, "bool": True},
]


@pytest.mark.parametrize("size", [1, 2, 70, 2500])
def test_dict_payloads_are_encoded_exactly_like_canonical_json_dumps(size: int) -> None:
    payloads = [TRICKY_PAYLOADS[i % len(TRICKY_PAYLOADS)] for i in range(size)]
    if size > 2000:  # one chunk of the encoder without any payload holding "},{"
        payloads[1024:2048] = [{"n": i, "s": "é"} for i in range(1024)]
    texts = payload_texts(payloads, ["E"] * size)
    assert texts == [canonical(p) for p in payloads]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@settings(max_examples=200)
@given(st.lists(st.dictionaries(st.text(max_size=4), json_values, max_size=4), min_size=1))
def test_any_batch_of_dicts_encodes_like_json_dumps_one_by_one(payloads: list[dict]) -> None:
    assert payload_texts(payloads, ["E"] * len(payloads)) == [canonical(p) for p in payloads]


def test_json_text_with_surrounding_whitespace_is_accepted_and_stored_as_given() -> None:
    assert payload_texts([' {"a": 1} \n'], ["E"]) == [' {"a": 1} \n']


@pytest.mark.parametrize("text", ['{"x":NaN}', '{"x":Infinity}', "[]", "{} {}", '{"a":1'])
def test_json_text_that_is_not_one_strict_json_object_is_refused(text: str) -> None:
    with pytest.raises(InvalidEventError, match="payload #0"):
        payload_texts([text], ["E"])


@pytest.mark.parametrize("size", [100, 3000])
def test_a_bad_dict_in_a_large_batch_is_named_by_its_index(size: int) -> None:
    payloads = [{"a": 1}] * size + [{"at": T0}] + [{"b": 2}] * 10
    with pytest.raises(InvalidEventError, match=f"payload #{size}"):
        payload_texts(payloads, ["E"] * (size + 11))


def events_for(streams: list[str]) -> list[NewEvent]:
    return [
        NewEvent(
            stream_id=stream,
            stream_type="T",
            event_type="E",
            payload={"i": i, "s": "x" * (i % 3)},
            actor="ada" if i % 2 else "",
            schema_version=1 + i % 2,
        )
        for i, stream in enumerate(streams)
    ]


def test_large_and_small_batches_are_stamped_identically() -> None:
    streams = [f"s-{i % 7}" for i in range(100)]
    batch = stamping.check(events_for(streams), dict.fromkeys(streams, None), ids())
    head = stamping.Head(41, b"\x07" * 32, {"s-1": 3, "s-5": 9}, T0)
    small, large = stamping._stamp_small(batch, head), stamping._stamp_large(batch, head)
    assert small.table.equals(large.table)
    assert small.latest == large.latest
    assert small.last_hash == large.last_hash


@pytest.mark.parametrize("size", [1, 63, 64, 500])
def test_versions_continue_each_stream_and_hashes_chain_from_the_head(size: int) -> None:
    streams = [f"s-{(i * 5) % 11}" for i in range(size)]
    batch = stamping.check(events_for(streams), dict.fromkeys(streams, None), ids())
    known = {"s-0": 4, "s-3": 1}
    stamped = stamping.stamp(batch, stamping.Head(10, fmt.GENESIS, known, T0))
    rows = stamped.table.to_pylist()
    seen = dict(known)
    for row in rows:
        seen[row["stream_id"]] = seen.get(row["stream_id"], 0) + 1
        assert row["version"] == seen[row["stream_id"]]
    assert [row["position"] for row in rows] == list(range(11, 11 + size))
    assert stamped.latest == {s: seen[s] for s in set(streams)}
    hashes = list(fmt.chain(fmt.canonical_rows(stamped.table), fmt.GENESIS))
    assert [row["hash"] for row in rows] == hashes
    assert stamped.last_hash == hashes[-1]


@pytest.mark.parametrize("bad", [True, 0, 40000, "1", 1.0])
def test_a_bad_schema_version_among_good_ones_in_a_large_batch_is_refused(bad: object) -> None:
    events = events_for(["a"] * 100)
    events[60] = NewEvent(**{**_fields(events[60]), "schema_version": bad})
    with pytest.raises(InvalidEventError, match=re.escape(f"schema_version {bad!r}")):
        stamping.check(events, {"a": 0}, ids())


def test_a_bool_schema_version_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="schema_version True"):
        stamping.check(
            [
                NewEvent(
                    stream_id="a", stream_type="T", event_type="E", payload={}, schema_version=True
                )
            ],
            {"a": 0},
            ids(),
        )


def test_default_event_ids_made_in_bulk_look_like_random_ids_and_are_all_different() -> None:
    streams = ["a"] * 500
    batch = stamping.check(events_for(streams), {"a": 0}, stamping.random_ids)
    made = batch.columns["event_id"].to_pylist()  # large batches keep them in Arrow
    assert len(set(made)) == 500
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert len(stamping.random_ids()) == 32


def test_given_event_ids_are_kept_and_only_missing_ones_are_generated() -> None:
    events = events_for(["a", "a"])
    events[0] = NewEvent(stream_id="a", stream_type="T", event_type="E", payload={}, event_id="x")
    batch = stamping.check(events, {"a": 0}, ids())
    assert batch.columns["event_id"] == ["x", "id-1"]


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(max_codepoint=0x2FF)) | st.text())
def test_the_fast_control_character_check_agrees_with_the_regex(text: str) -> None:
    assert stamping._has_control(text) == (stamping._CONTROL.search(text) is not None)


@pytest.mark.parametrize("bad", ["\x00", "\x1f", "\x7f", "\x85", "\x9f"])
def test_a_control_character_in_any_text_column_of_a_large_batch_is_refused(bad: str) -> None:
    for name in ("stream_id", "stream_type", "event_type", "actor", "command_id", "event_id"):
        events = events_for(["s"] * 100)
        events[70] = NewEvent(**{**_fields(events[70]), name: f"x{bad}é"})
        with pytest.raises(InvalidEventError, match=f"event {name}"):
            stamping.check(events, {"s": None}, ids())


@pytest.mark.parametrize("blank", ["", " ", "   ", "\u3000", "\xa0 "])
@pytest.mark.parametrize("at", [0, 70, 99])
def test_a_blank_required_text_in_a_large_batch_is_refused(blank: str, at: int) -> None:
    for name in ("stream_id", "stream_type", "event_type"):
        events = events_for(["s"] * 100)
        events[at] = NewEvent(**{**_fields(events[at]), name: blank})
        with pytest.raises(InvalidEventError, match=re.escape(f"event {name} {blank!r} is empty")):
            stamping.check(events, {"s": None, blank: None}, ids())


def _fields(event: NewEvent) -> dict:
    return {name: getattr(event, name) for name in NewEvent.__slots__}


class Kind(IntEnum):
    TWO = 2


@pytest.mark.parametrize("schema_version", [1, Kind.TWO])
def test_large_batches_with_constant_columns_are_stamped_like_small_ones(
    schema_version: int,
) -> None:
    streams = [f"s-{i % 7}" for i in range(100)]
    constant = {"actor": "ada", "command_id": "c-1", "schema_version": schema_version}
    events = [NewEvent(**{**_fields(e), **constant}) for e in events_for(streams)]
    batch = stamping.check(events, dict.fromkeys(streams, None), ids())
    head = stamping.Head(41, b"\x07" * 32, {"s-1": 3}, T0)
    small, large = stamping._stamp_small(batch, head), stamping._stamp_large(batch, head)
    assert small.table.equals(large.table)
    assert small.last_hash == large.last_hash
    assert large.table["schema_version"].to_pylist() == [int(schema_version)] * 100
