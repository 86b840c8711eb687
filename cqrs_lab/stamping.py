"""From a batch of new events to the rows of one commit: checks, versions, hashes, the table.

This is the CPU side of every append, so it is written for speed (issue 2's targets: a one-event
commit under a millisecond including its flushes, bulk batches at >= 500 k events/s):

- The given fields are read once, as one list per column; each text column is checked over its
  joined text (one C pass for ASCII), not one call per value.
- Payloads become canonical JSON in bulk (`payloads.py`).
- Small batches are stamped in plain Python and written by `tinyparquet` from Python lists;
  large ones get versions from numpy and their hashed text from Arrow, where per-call costs vanish.
- The sha256 chain itself stays a tight Python loop: each hash depends on the one before
  (`segments.chain_columns` feeds it from Arrow a slice at a time).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cqrs_lab import segments as fmt
from cqrs_lab.determinism import IdGenerator, random_ids
from cqrs_lab.errors import ConcurrencyError, DuplicateEventError, InvalidEventError
from cqrs_lab.payloads import payload_array, payload_texts

if TYPE_CHECKING:
    from cqrs_lab.eventlog import NewEvent

SMALL_BATCH = 64  # below this, plain Python beats vectorised calls (their fixed cost dominates)
REQUIRED_TEXT = ("stream_id", "stream_type", "event_type")
TEXT = (*REQUIRED_TEXT, "command_id", "correlation_id", "causation_id", "actor", "event_id")
_GIVEN = (*TEXT, "schema_version", "payload")
_READ = [(name, attrgetter(name)) for name in _GIVEN]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))  # ASCII minus _CONTROL
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Batch:
    """Checked events as columns (lists, in event order); payloads as canonical text (an Arrow
    array in batches of SMALL_BATCH or more); the event ids also as an Arrow array if they were
    all made here in bulk (stamping need not convert them again)."""

    columns: dict[str, Sequence[Any]]
    made_ids: pa.Array | None = None
    ids_made: bool = False  # every id was made here: 128 random bits, never taken (as a uuid4)

    def __len__(self) -> int:
        return len(self.columns["stream_id"])


@dataclass(frozen=True, slots=True)
class Head:
    """What the writer knows of the log's end: the stamp continues from here."""

    position: int
    last_hash: bytes
    versions: Mapping[str, int]
    recorded_at: datetime


class Stamped:
    """One commit's rows, and what the writer's state learns from them.

    A small commit keeps its rows as Python columns (times in microseconds): the segment is
    written from them, and the Arrow table is only built if someone asks for it.
    """

    __slots__ = ("_table", "at", "columns", "event_ids", "last_hash", "latest", "rows")

    def __init__(
        self,
        *,
        latest: dict[str, int],
        event_ids: Sequence[str] | pa.Array,
        last_hash: bytes,
        at: datetime,
        table: pa.Table | None = None,
        columns: dict[str, Sequence[Any]] | None = None,
    ) -> None:
        self.latest = latest  # each stream's version after this commit
        self.event_ids = event_ids  # the batch's own list: the writer's id index knows it
        self.last_hash = last_hash
        self.at = at  # the commit's recorded_at
        self._table = table
        self.columns = columns
        self.rows = len(event_ids)

    @property
    def table(self) -> pa.Table:
        """The rows as an Arrow table with the event row schema."""
        if self._table is None:
            assert self.columns is not None  # one of the two is always given
            arrays = [pa.array(self.columns[f.name], f.type) for f in _STORED_FIELDS]
            self._table = pa.Table.from_arrays(arrays, schema=_STORED).cast(fmt.SCHEMA)
        return self._table


_STORED = fmt.SCHEMA.set(7, pa.field("recorded_at", pa.int64(), nullable=False))
_STORED_FIELDS = list(_STORED)


# --- checking ------------------------------------------------------------------------------------


def check(
    events: Sequence[NewEvent], expected: Mapping[str, int | None], ids: IdGenerator
) -> Batch:
    """Validate a batch and give it event ids; raises InvalidEventError or DuplicateEventError."""
    if not events:
        raise InvalidEventError("append needs at least one event")
    # One list per field, not one tuple per event: big batches would otherwise make the garbage
    # collector walk the whole heap (10^5 new tuples trigger full collections).
    columns: dict[str, Sequence[Any]] = {name: list(map(getter, events)) for name, getter in _READ}
    # No id given and the default generator: every id is made here (`made`), a few from the
    # generator's pool, a large batch's in bulk and kept in Arrow, where the id index keys them
    # (eventids.py). Otherwise the given ids are used and missing ones made one by one.
    given, made_ids = columns["event_id"], None
    made = ids is random_ids and given.count(None) == len(given)  # count: a C loop, by identity
    if not made:
        columns["event_id"] = [event_id or ids() for event_id in given]
    elif len(events) < SMALL_BATCH:
        columns["event_id"] = [random_ids() for _ in given]
    else:
        columns["event_id"] = made_ids = _random_hex_ids(len(events))
    # Ids made here are 32 hex digits from 128 random bits: nothing to check, and (like a
    # uuid4's) never repeated, so only given ones are checked for repeats.
    for name in TEXT[:-1] if made else TEXT:
        _check_text(name, columns[name])
    missing = set(columns["stream_id"]).difference(expected)
    if missing:
        raise InvalidEventError(f"no expected version given for stream {min(missing)!r}")
    if not made and len(set(columns["event_id"])) != len(events):
        raise DuplicateEventError(_first_repeat(columns["event_id"]))
    _check_schema_versions(columns["schema_version"])
    encode = payload_texts if len(events) < SMALL_BATCH else payload_array
    columns["payload"] = encode(columns["payload"], columns["event_type"])
    return Batch(columns, made_ids, made)


def _check_text(name: str, values: Sequence[Any]) -> None:
    """Text without control characters; the required columns also non-blank."""
    try:
        joined = "".join(values)
    except TypeError:
        bad = next(value for value in values if not isinstance(value, str))
        raise InvalidEventError(f"event {name} must be text, got {bad!r}") from None
    required = name in REQUIRED_TEXT
    if not _has_control(joined) and not (required and _any_blank(values, joined)):
        return
    for value in values:
        if (required and not value.strip()) or _CONTROL.search(value):
            raise InvalidEventError(
                f"event {name} {value!r} is empty or contains control characters"
            )


def _random_hex_ids(count: int) -> pa.Array:
    """`count` ids like random_ids' from one urandom call, as an Arrow array: Arrow cuts the hex
    digits into strings (twice as fast as slicing them in Python)."""
    digits = pa.py_buffer(os.urandom(16 * count).hex().encode())
    offsets = pa.py_buffer(np.arange(0, 32 * count + 1, 32, dtype=np.int32))
    return pa.Array.from_buffers(pa.string(), count, [None, offsets, digits])


def _has_control(text: str) -> bool:
    """Whether text holds a control character (_CONTROL); ASCII text in one C pass, ~10x faster
    than the regex: deleting every printable ASCII byte leaves exactly the control bytes."""
    if text.isascii():
        return bool(text.encode().translate(None, _PRINTABLE_ASCII))
    return not text.isprintable() and _CONTROL.search(text) is not None


def _any_blank(values: Sequence[str], joined: str) -> bool:
    """Whether a value is empty or white space, for values without control characters."""
    if joined.isascii() and " " not in joined:  # the only ASCII white space that is not control
        return "" in values  # a C loop: by identity, then by length (no set of 10^4 ids)
    return not all(value.strip() for value in set(values))  # few distinct names per batch


def _check_schema_versions(values: Sequence[Any]) -> None:
    if len(values) >= SMALL_BATCH and set(map(type, values)) == {int}:
        # exact ints only (True == 1 and would hide among ones): each distinct value once
        constant = values.count(values[0]) == len(values)
        values = values[:1] if constant else list(dict.fromkeys(values))
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 32767:
            raise InvalidEventError(f"schema_version {value!r} is out of range 1..32767")


def _first_repeat(values: Sequence[str]) -> str:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    raise ValueError("no repeated value")


# --- stamping ------------------------------------------------------------------------------------


def check_expected(versions: Mapping[str, int], expected: Mapping[str, int | None]) -> None:
    """Raise ConcurrencyError for the first stream not at its expected version."""
    for stream_id, version in expected.items():
        actual = versions.get(stream_id, 0)
        if version is not None and version != actual:
            raise ConcurrencyError(stream_id, version, actual)


def stamp(batch: Batch, head: Head) -> Stamped:
    """Assign positions, versions, the commit's time and chained hashes; build the table."""
    if len(batch) < SMALL_BATCH:
        return _stamp_small(batch, head)
    return _stamp_large(batch, head)


def _stamp_small(batch: Batch, head: Head) -> Stamped:
    columns = batch.columns
    latest: dict[str, int] = {}
    versions = []
    for stream_id in columns["stream_id"]:
        latest[stream_id] = latest.get(stream_id, head.versions.get(stream_id, 0)) + 1
        versions.append(latest[stream_id])
    at = head.recorded_at
    rows = list(
        zip(
            range(head.position + 1, head.position + len(batch) + 1),
            columns["stream_id"],
            columns["stream_type"],
            versions,
            columns["event_type"],
            map(int, columns["schema_version"]),  # an int subclass would print differently
            _texts(columns["payload"]),
            repeat((at - fmt.EPOCH) // _MICROSECOND),
            *(columns[name] for name in fmt.HASHED_COLUMNS[8:]),
        )
    )
    hashes = list(fmt.chain(map(_row_text, rows), head.last_hash))
    stored = dict(zip(fmt.HASHED_COLUMNS, zip(*rows, strict=True), strict=True))
    stored["hash"] = hashes
    event_ids = columns["event_id"]
    return Stamped(latest=latest, event_ids=event_ids, last_hash=hashes[-1], at=at, columns=stored)


def _texts(column: Sequence[str] | pa.Array) -> Sequence[str]:
    return column.to_pylist() if isinstance(column, pa.Array) else column


def _row_text(row: tuple[Any, ...]) -> bytes:
    """`fmt.canonical_row` for a row whose time is already in microseconds."""
    return fmt.SEPARATOR.join([v if isinstance(v, str) else str(v) for v in row]).encode()


def _stamp_large(batch: Batch, head: Head) -> Stamped:
    columns, count = batch.columns, len(batch)
    stream_ids = pa.array(columns["stream_id"], pa.string())
    versions, latest = _versions(stream_ids, head.versions)
    micros = (head.recorded_at - fmt.EPOCH) // _MICROSECOND
    stamps = pa.array(np.full(count, micros, dtype=np.int64))
    arrays: dict[str, Any] = {
        "stream_id": stream_ids,
        "payload": _payload_array(columns["payload"]),
        "position": pa.array(
            np.arange(head.position + 1, head.position + count + 1, dtype=np.int64)
        ),
        "version": pa.array(versions),
        "recorded_at": stamps.view(fmt.SCHEMA.field("recorded_at").type),
    }
    # What each column adds to the hashed row text: its values, or one value for all rows
    # (a scalar: joining fewer arrays is cheaper; lineage, stream type, time are often constant).
    texts: dict[str, Any] = {
        "stream_id": stream_ids,
        "payload": arrays["payload"],
        "position": _as_text(arrays["position"]),
        "version": _as_text(arrays["version"]),
        "recorded_at": str(micros),
    }
    for name in (*TEXT[1:-1], "schema_version"):
        arrays[name], texts[name] = _column(columns[name], fmt.SCHEMA.field(name).type)
    if batch.made_ids is None:
        arrays["event_id"], texts["event_id"] = _column(columns["event_id"], pa.string())
    else:
        arrays["event_id"] = texts["event_id"] = batch.made_ids
    parts = [texts[name] for name in fmt.HASHED_COLUMNS]
    arrays["hash"] = fmt.chain_columns(parts, count, head.last_hash)
    table = pa.Table.from_arrays([arrays[name] for name in fmt.COLUMNS], schema=fmt.SCHEMA)
    event_ids = columns["event_id"]
    return Stamped(
        latest=latest,
        event_ids=event_ids,
        last_hash=arrays["hash"][-1].as_py(),
        at=head.recorded_at,
        table=table,
    )


def _payload_array(column: Sequence[str] | pa.Array) -> pa.Array:
    return column if isinstance(column, pa.Array) else pa.array(column, pa.string())


def _column(values: Sequence[Any], kind: pa.DataType) -> tuple[pa.Array, Any]:
    """A column and its text for the row hash; one value repeated (empty lineage, one stream
    type) is built in C++ and hashed as one scalar."""
    if values.count(values[0]) == len(values):  # identity hits first: cheap
        value = values[0] if kind == pa.string() else int(values[0])  # int: as _stamp_small
        scalar = pa.scalar(value, kind)
        return pa.repeat(scalar, len(values)), scalar if kind == pa.string() else str(value)
    array = pa.array(values, kind)
    return array, array if kind == pa.string() else _as_text(array)


def _as_text(array: pa.Array) -> pa.Array:
    return pc.cast(array, pa.string())


def _versions(stream_ids: pa.Array, known: Mapping[str, int]) -> tuple[Any, dict[str, int]]:
    """Each event's version (its stream's version before, plus its rank in the batch), and each
    stream's last version, computed with numpy: group by stream, rank within the group."""
    encoded = stream_ids.dictionary_encode()
    streams = encoded.dictionary.to_pylist()
    groups = encoded.indices.to_numpy()
    before = np.fromiter((known.get(s, 0) for s in streams), np.int64, count=len(streams))
    counts = np.bincount(groups, minlength=len(streams))
    order = np.argsort(groups, kind="stable")
    in_order = groups[order]
    rank = np.arange(len(groups)) - (np.cumsum(counts) - counts)[in_order]
    versions = np.empty(len(groups), np.int64)
    versions[order] = before[in_order] + rank + 1
    return versions, dict(zip(streams, (before + counts).tolist(), strict=True))
