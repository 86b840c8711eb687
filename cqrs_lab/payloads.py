"""Event payloads as canonical JSON text: dicts encoded, JSON text checked, in bulk.

The canonical text is the standard library's: `json.dumps(payload, sort_keys=True,
separators=(",", ":"), allow_nan=False)` (non-ASCII escaped as \\uXXXX). It is hashed into the
chain and shown by notebooks, so it must never change; `orjson` only makes it faster:

- JSON text is checked by `orjson.loads` (~2x faster than the C scanner of `json`). orjson
  accepts only strict RFC 8259 JSON, all of which `json` accepts too; whatever orjson refuses
  (NaN, lone surrogates, numbers beyond 64 bits, surrounding oddities) goes the slow way, which
  accepts it or names what is wrong.
- Dicts are encoded by orjson a chunk at a time (~10x faster than `json`), and its text is kept
  only where it is provably the standard library's: pure ASCII without DEL (json escapes both;
  orjson writes them raw), no float and no null (float formats differ, e.g. 1e-05; orjson writes
  NaN as null where json refuses it), no subclass of a JSON type (json and orjson treat them
  differently), and `marshal` takes the payloads (it refuses every object but the exact core
  types, so also what orjson serialises and json refuses: enums, UUIDs; 3x cheaper than
  decoding orjson's text to compare it). Anything else is encoded by `json`.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from cqrs_lab.errors import InvalidEventError

CHUNK = 1024  # dict payloads encoded per encoder call: small texts, no page faults on fresh memory


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One encoder and decoder for the process: json.dumps/loads with options build a new one per call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_ORJSON = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
# Bytes mapped so that a digit followed by "." or an exponent reads "0.": every float holds that
# in both encoders (a match inside a string only sends its chunk the slow way).
_NUMBER_SHAPE = bytes(
    ord("0") if byte in b"0123456789" else ord(".") if byte in b".eE" else ord(" ")
    for byte in range(256)
)


def payload_texts(
    payloads: Sequence[Any], event_types: Sequence[str], types: set[type] | None = None
) -> list[str]:
    """Payloads as canonical JSON (sorted keys, no spaces); JSON text given is checked as is.
    `types`: the payloads' types, if the caller knows them already."""
    types = set(map(type, payloads)) if types is None else types
    if types == {dict}:
        texts = _encode_all(payloads)
        if texts is not None:
            return texts
    elif types == {str} and _all_json_objects(payloads):
        return list(payloads)
    return [
        _payload_text(payload, f"payload #{index} ({event_type})")
        for index, (payload, event_type) in enumerate(zip(payloads, event_types, strict=True))
    ]


def _encode_all(payloads: Sequence[dict[str, Any]]) -> list[str] | None:
    """All dicts, a chunk at a time; None if any fails to encode (the one-by-one path names it)."""
    texts: list[str] = []
    for start in range(0, len(payloads), CHUNK):
        chunk = payloads[start : start + CHUNK]
        try:
            texts += _fast_texts(chunk) or _split(_ENCODER.encode(chunk), chunk)
        except (TypeError, ValueError, RecursionError):
            return None
    return texts


def payload_array(payloads: Sequence[Any], event_types: Sequence[str]) -> pa.Array:
    """`payload_texts` as an Arrow string array, for large batches: dicts that orjson may encode
    go from its bytes into the array with no Python string each (~2 ms less per 10^4)."""
    types = set(map(type, payloads))
    if types != {dict}:
        return pa.array(payload_texts(payloads, event_types, types), pa.string())
    parts = []
    for start in range(0, len(payloads), CHUNK):
        chunk = payloads[start : start + CHUNK]
        part = _fast_array(chunk)
        if part is None:
            texts = _encode_all(chunk)
            if texts is None:  # a payload json refuses: the one-by-one path names it
                return pa.array(payload_texts(payloads, event_types), pa.string())
            part = pa.array(texts, pa.string())
        parts.append(part)
    return pa.concat_arrays(parts)


def _fast_array(chunk: Sequence[dict[str, Any]]) -> pa.Array | None:
    """The chunk's texts as an Arrow array cut out of orjson's bytes, or None.

    In "[a,b,c]" every boundary between two payloads is a "},{"; if there are exactly n - 1 of
    them, they are the boundaries (a payload holding "},{" itself makes more, and sends this
    chunk the other way), and dropping their commas and the brackets leaves "a" "b" "c" back
    to back. The checks of `_same_as_json` are made here with numpy, in a few passes over the
    bytes (bytes.translate and searching for "0." or "null" cost ~5x more on 10^5 bytes).
    """
    data = _fast_bytes(chunk)
    if data is None:
        return None
    codes = np.frombuffer(data, np.uint8)
    if _has_null_or_float(codes):
        return None
    commas = 1 + np.flatnonzero(
        (codes[:-2] == ord("}")) & (codes[1:-1] == ord(",")) & (codes[2:] == ord("{"))
    )
    if len(commas) != len(chunk) - 1:
        return None
    keep = np.ones(len(codes), bool)
    keep[commas] = keep[0] = keep[-1] = False
    body = codes[keep]
    # payload k + 1 starts right after comma k, less the bracket and the k + 1 commas dropped
    starts = commas - np.arange(1, len(commas) + 1)
    offsets = np.concatenate(([0], starts, [len(body)])).astype(np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(body)]
    return pa.Array.from_buffers(pa.string(), len(chunk), buffers)


def _has_null_or_float(codes: np.ndarray) -> bool:
    """`_same_as_json`'s "null" and float checks, vectorised: "null", or a digit followed by
    ".", "e" or "E" (uint8 arithmetic wraps: code - 48 < 10 holds for the digits alone)."""
    null = (codes[:-3] == ord("n")) & (codes[1:-2] == ord("u")) & (codes[2:-1] == ord("l"))
    if (null & (codes[3:] == ord("l"))).any():
        return True
    after = codes[1:]
    dot_or_exponent = ((after | 32) == ord("e")) | (after == ord("."))  # "E" | 32 is "e"
    return bool((((codes[:-1] - ord("0")) < 10) & dot_or_exponent).any())


def _fast_texts(chunk: Sequence[dict[str, Any]]) -> list[str] | None:
    """orjson's texts of the chunk, where they are exactly json's, or None."""
    data = _fast_bytes(chunk)
    if data is None or not _same_as_json(data):
        return None
    return _split(data.decode("ascii"), chunk)


def _fast_bytes(chunk: Sequence[dict[str, Any]]) -> bytes | None:
    """orjson's encoding of the chunk (a list) if it is pure ASCII without DEL and of exact
    core types only (see the module docstring), or None; the caller checks `_same_as_json`."""
    try:
        data = orjson.dumps(chunk, option=_ORJSON)
    except TypeError:  # orjson.JSONEncodeError: a type it passes through or does not know
        return None
    if not data.isascii() or b"\x7f" in data:
        return None
    try:  # marshal takes only exact core types: no enum, UUID, subclass or other object
        marshal.dumps(chunk)  # type: ignore[arg-type]  # (any other Sequence: refused too)
    except ValueError:
        return None
    return data


def _same_as_json(data: bytes) -> bool:
    """Whether orjson's ASCII text of exact core types is json's: no null, no float (or a
    string that looks like one: a digit followed by ".", "e" or "E")."""
    return b"null" not in data and b"0." not in data.translate(_NUMBER_SHAPE)


def _split(text: str, chunk: Sequence[dict[str, Any]]) -> list[str]:
    """The encoded list of a chunk's dicts, cut at the "},{" between them.

    Every boundary between two encoded objects is exactly "},{", so the cut yields one piece per
    payload unless some payload holds "},{" itself; then each is encoded on its own instead.
    """
    pieces = text[2:-2].split("},{")
    if len(pieces) != len(chunk):
        return [_ENCODER.encode(payload) for payload in chunk]
    return ["{" + piece + "}" for piece in pieces]


def _payload_text(payload: Any, which: str) -> str:
    if isinstance(payload, str):
        _check_json_object(payload, which)
        return payload
    if not isinstance(payload, Mapping):
        raise InvalidEventError(f"{which} is not a mapping: {payload!r}")
    try:
        return _ENCODER.encode(payload)
    except (TypeError, ValueError) as error:
        raise InvalidEventError(f"{which} is not JSON: {error}") from None


def _all_json_objects(texts: Sequence[str]) -> bool:
    """Whether every text is one JSON object that orjson accepts (then json accepts it too)."""
    try:
        return set(map(type, map(orjson.loads, texts))) == {dict}
    except orjson.JSONDecodeError:
        return False  # the one-by-one path accepts what only json accepts, or says why not


def _check_json_object(text: str, which: str) -> None:
    """JSON text must be one object; the common exact case costs one raw_decode."""
    try:
        parsed, end = _DECODER.raw_decode(text)
        if end == len(text) and type(parsed) is dict:
            return
    except ValueError:
        pass  # json.loads below gives the message (and allows surrounding whitespace)
    try:
        parsed = json.loads(text, parse_constant=_no_constants)
    except ValueError as error:
        raise InvalidEventError(f"{which} is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise InvalidEventError(f"{which} is not a JSON object: {text[:60]!r}")
