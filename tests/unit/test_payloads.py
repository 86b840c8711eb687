"""Payload text: orjson fast paths give exactly what the standard library gives, or step aside."""

import enum
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_lab import payloads
from cqrs_lab.errors import InvalidEventError


def canonical(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def encoded(batch: list[Any]) -> list[str] | str:
    """payload_texts' answer, or the error's message; payload_array must give the same."""
    try:
        texts = payloads.payload_texts(batch, ["E"] * len(batch))
    except InvalidEventError as error:
        with pytest.raises(InvalidEventError) as again:
            payloads.payload_array(batch, ["E"] * len(batch))
        assert str(again.value) == str(error)
        return f"refused: {error}"
    array = payloads.payload_array(batch, ["E"] * len(batch))
    assert array.type == pa.string()
    assert array.to_pylist() == texts
    return texts


def expected(batch: list[Any]) -> list[str] | str:
    try:
        return [canonical(p) for p in batch]
    except (TypeError, ValueError):
        return "refused"


def assert_same_outcome(batch: list[Any]) -> None:
    """Same texts as the standard library's, or refused where it refuses."""
    want, got = expected(batch), encoded(batch)
    if isinstance(want, list):
        assert got == want
    else:
        assert isinstance(got, str)
        assert got.startswith("refused: payload #")


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


class Count(int):
    def __repr__(self) -> str:
        return "not a number"


class Pair(NamedTuple):
    a: int
    b: int


@dataclass
class Point:
    x: int


ODD_VALUES = [
    "\x7f",
    "é",
    "日本",
    "\U0001f600",
    "\x1f\n\t\x00",
    "},{",
    "a,1.5",
    1e-05,
    1e16,
    0.1,
    -0.0,
    float("nan"),
    float("inf"),
    2**64,
    -(2**63),
    2**63,
    None,
    True,
    (1, 2),
    Level.HIGH,
    Name("x"),
    Count(5),
    Colour.RED,
    uuid.UUID(int=7),
    Point(1),
    datetime(2026, 1, 1, tzinfo=UTC),
    Decimal("1.5"),
    b"bytes",
    {1, 2},
    1j,
    OrderedDict(b=1, a=2),
    Pair(1, 2),
    orjson.Fragment(b"1"),
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_an_odd_value_in_a_big_batch_is_encoded_or_refused_as_json_would(value: Any) -> None:
    batch = [{"n": i, "s": "plain"} for i in range(150)]
    batch[77] = {"odd": value, "n": 77}
    assert_same_outcome(batch)
    if expected(batch) == "refused":
        assert "payload #77" in str(encoded(batch))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["\x7f", "é", "},{", ":1.5", "[null", ",1e5", "\x00"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)
WORDS = st.text(alphabet="abyz 0129-_é\x7f")  # no "." or "e": "1.5" reads as a float
plain_values = st.recursive(  # what real payloads hold: words, integers, lists, objects
    st.booleans() | st.integers(-(2**70), 2**70) | WORDS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300)
@given(st.lists(st.dictionaries(st.text(max_size=4), json_values, max_size=4), min_size=1))
def test_any_batch_of_dicts_encodes_exactly_as_the_standard_library_does(batch: list) -> None:
    assert_same_outcome(batch * 70)


@settings(max_examples=300)
@given(st.lists(st.dictionaries(WORDS, plain_values, max_size=4), min_size=1))
def test_plain_payloads_take_the_fast_path_and_match_the_standard_library(batch: list) -> None:
    fast = payloads._fast_texts(batch)
    texts = [canonical(p) for p in batch]
    assert fast is None or fast == texts
    in_64_bits = all(-(2**63) <= n < 2**64 for n in _integers(batch))
    if in_64_bits and "\\u00" not in "".join(texts):
        assert fast == texts  # ASCII words and 64-bit integers: orjson's text is json's


@settings(max_examples=300)
@given(st.lists(st.dictionaries(WORDS, plain_values, max_size=4), min_size=1))
def test_plain_payloads_are_cut_from_orjson_bytes_exactly_as_json_encodes_them(batch: list) -> None:
    fast = payloads._fast_array(batch)
    texts = [canonical(p) for p in batch]
    assert fast is None or fast.to_pylist() == texts
    in_64_bits = all(-(2**63) <= n < 2**64 for n in _integers(batch))
    if in_64_bits and "\\u00" not in "".join(texts) and "},{" not in "".join(texts)[1:-1]:
        assert fast is not None


@settings(max_examples=1000)
@given(st.binary(max_size=40) | st.text(alphabet="null.eE019 ,{}", max_size=40).map(str.encode))
def test_the_vectorised_null_and_float_check_agrees_with_the_bytes_one(data: bytes) -> None:
    codes = np.frombuffer(data, np.uint8)
    assert payloads._has_null_or_float(codes) == (not payloads._same_as_json(data))


def _integers(value: Any) -> list[int]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [n for item in value for n in _integers(item)]
    return [value] if type(value) is int else []


@pytest.mark.parametrize("size", [1, 2, 1024, 1025, 3000])
@pytest.mark.parametrize(
    "odd",
    [None, {"s": "},{"}, {"s": "}{"}, {"l": [{"a": 1}, {"b": 2}]}, {"d": {"e": {}}}, {}],
    ids=repr,
)
def test_boundaries_cut_from_orjson_bytes_are_the_payloads(size: int, odd: Any) -> None:
    batch: list[Any] = [{"n": i, "k": "v" * (i % 5)} for i in range(size)]
    if odd is not None:
        batch[size // 2] = odd
    texts = [canonical(p) for p in batch]
    assert encoded(batch) == texts
    assert payloads.payload_array(batch, ["E"] * size).to_pylist() == texts


def test_a_large_batch_of_typical_payloads_takes_the_fast_path() -> None:
    batch = [{"name": f"Customer {i}", "credit_limit": i * 37, "tags": ["a"]} for i in range(3000)]
    assert payloads._fast_texts(batch) == [canonical(p) for p in batch]
    fast = payloads._fast_array(batch[:1024])
    assert fast is not None
    assert fast.to_pylist() == [canonical(p) for p in batch[:1024]]


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from('{}[]":,. -+0123456789eEtrufalsn\\u\x00\x7f é\ud800')))
def test_json_text_orjson_accepts_is_json_the_standard_library_accepts(text: str) -> None:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    stdlib = json.loads(text, parse_constant=payloads._no_constants)  # must not raise
    assert (type(stdlib) is dict) == (type(parsed) is dict)  # (big numbers may differ in value)


@settings(max_examples=200)
@given(st.lists(st.dictionaries(st.text(max_size=4), json_values, max_size=3), min_size=1))
def test_json_text_is_accepted_exactly_when_the_standard_library_accepts_it(batch: list) -> None:
    texts = [json.dumps(payload) for payload in batch] * 70  # NaN and Infinity included
    try:
        parsed = [json.loads(t, parse_constant=payloads._no_constants) for t in texts]
        want: list[str] | None = texts if all(type(p) is dict for p in parsed) else None
    except ValueError:
        want = None
    got = encoded(texts)
    assert got == want if want is not None else str(got).startswith("refused: payload #")
