"""The append-only Parquet event log on real files: commits, reads, integrity, recovery, the CLI."""

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cqrs_lab import segments as fmt
from cqrs_lab.cli import main
from cqrs_lab.determinism import fixed_clock, seeded_ids
from cqrs_lab.errors import (
    ConcurrencyError,
    CorruptLogError,
    DuplicateEventError,
    InvalidEventError,
    LogNotFoundError,
    StoreLockedError,
)
from cqrs_lab.eventlog import ANY_VERSION, NO_STREAM, Commit, EventLog, NewEvent, RecordedEvent
from cqrs_lab.locking import FileLock
from cqrs_lab.writer import EventIdIndex, WriterState

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


# --- helpers -------------------------------------------------------------------------------------


def event(
    stream_id: str = "customer-1",
    event_type: str = "CustomerRegistered",
    payload: Any = None,
    **fields: Any,
) -> NewEvent:
    fields.setdefault("stream_type", "Customer")
    return NewEvent(
        stream_id=stream_id,
        event_type=event_type,
        payload={"n": 1} if payload is None else payload,
        **fields,
    )


def new_log(path: Path, *, seed: int = 0) -> EventLog:
    return EventLog.create(path, clock=fixed_clock(T0, MINUTE), ids=seeded_ids(seed))


def open_quietly(path: Path) -> EventLog:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EventLog.open(path, clock=fixed_clock(T0, MINUTE))


def append_one(log: EventLog, stream_id: str = "customer-1", **fields: Any) -> Commit:
    return log.append([event(stream_id, **fields)], expected={stream_id: ANY_VERSION})


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file of a log folder and its bytes (the lock file's content is the holder's pid)."""
    return {
        str(p.relative_to(path)): b"" if p.name == fmt.LOCK_FILE else p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def segment_files(log: EventLog) -> list[Path]:
    return sorted(log.events_dir.glob("*.parquet"))


def positions(events: list[RecordedEvent]) -> list[int]:
    return [e.position for e in events]


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def footer_offsets(data: bytes) -> range:
    """Byte offsets of a Parquet file's footer (its metadata, before the length and magic)."""
    length = int.from_bytes(data[-8:-4], "little")
    return range(len(data) - 8 - length, len(data) - 8)


def drop_last_head_line(log_path: Path) -> bytes:
    """Forget the last commit in HEAD, as if its writer died between publishing and recording."""
    head = log_path / fmt.HEAD_FILE
    lines = head.read_bytes().splitlines(keepends=True)
    head.write_bytes(b"".join(lines[:-1]))
    return lines[-1]


def rewrite_consistently(log_path: Path, name: str, table: pa.Table) -> None:
    """Rewrite a segment *and* its HEAD line as a careful forger would: rehashed, re-digested."""
    head = log_path / fmt.HEAD_FILE
    entries, _, _ = fmt.parse_ledger(head.read_bytes())
    first = fmt.parse_segment(name).first
    previous = next(
        (bytes.fromhex(e.last_hash) for e in entries if e.segment.last == first - 1), fmt.GENESIS
    )
    hashes = list(fmt.chain(fmt.canonical_rows(table), previous))
    table = table.set_column(
        len(fmt.COLUMNS) - 1, fmt.SCHEMA.field("hash"), pa.array(hashes, pa.binary(32))
    )
    data = fmt.encode_segment(table)
    (log_path / fmt.EVENTS_DIR / name).write_bytes(data)
    rewritten = [
        fmt.LedgerEntry(e.segment, fmt.file_digest(data), hashes[-1].hex())
        if e.segment.name == name
        else e
        for e in entries
    ]
    head.write_bytes(b"".join(map(fmt.format_ledger_line, rewritten)))


def canonical_bytes(row: dict[str, Any]) -> bytes:
    """DESIGN.md's canonical row, written independently: hashed columns as text, \\x1f-joined."""
    micros = (row["recorded_at"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    texts = [str(micros if name == "recorded_at" else row[name]) for name in fmt.HASHED_COLUMNS]
    return "\x1f".join(texts).encode()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    with new_log(tmp_path / "log") as opened:
        yield opened


@pytest.fixture
def history(log: EventLog) -> EventLog:
    """Six events in four commits, one minute apart (commit k at T0 + k minutes)."""
    log.append(
        [event("c-1", "Registered"), event("c-2", "Registered")],
        expected={"c-1": NO_STREAM, "c-2": NO_STREAM},
    )  # positions 1, 2 at T0
    log.append([event("c-1", "Renamed")], expected={"c-1": 1})  # 3 at T0+1
    log.append(
        [event("c-2", "Renamed"), event("c-3", "Registered")],
        expected={"c-2": 1, "c-3": NO_STREAM},
    )  # 4, 5 at T0+2
    log.append([event("c-1", "Deleted")], expected={"c-1": 2})  # 6 at T0+3
    return log


# --- appending -----------------------------------------------------------------------------------


def test_the_first_event_of_a_new_stream_gets_position_1_and_version_1(log: EventLog) -> None:
    commit = log.append([event("customer-7")], expected={"customer-7": NO_STREAM})
    assert [(e.position, e.stream_id, e.version) for e in commit] == [(1, "customer-7", 1)]
    assert log.position == 1
    assert log.stream_version("customer-7") == 1


def test_one_commit_of_many_events_to_many_streams_numbers_them_gap_free(log: EventLog) -> None:
    log.append([event("a")], expected={"a": NO_STREAM})
    commit = log.append(
        [event("a"), event("b"), event("a"), event("c"), event("b")],
        expected={"a": 1, "b": NO_STREAM, "c": NO_STREAM},
    )
    assert [(e.position, e.stream_id, e.version) for e in commit] == [
        (2, "a", 2),
        (3, "b", 1),
        (4, "a", 3),
        (5, "c", 1),
        (6, "b", 2),
    ]
    assert [log.stream_version(s) for s in ("a", "b", "c", "nobody")] == [3, 2, 1, 0]


def test_many_commits_keep_positions_gap_free_and_versions_per_stream_gap_free(
    log: EventLog,
) -> None:
    streams = ["a", "b", "a", "c", "a", "b"] * 3
    for stream_id in streams:
        append_one(log, stream_id)
    everything = log.read()
    assert positions(everything) == list(range(1, len(streams) + 1))
    for stream_id in "abc":
        versions = [e.version for e in everything if e.stream_id == stream_id]
        assert versions == list(range(1, streams.count(stream_id) + 1))


def test_an_append_returns_the_recorded_rows_with_every_field(log: EventLog) -> None:
    commit = log.append(
        [
            event(
                "customer-7",
                "CustomerRegistered",
                {"name": "Ada", "address": "1 Loop Road"},
                event_id="e-1",
                command_id="cmd-1",
                correlation_id="corr-1",
                causation_id="cause-1",
                actor="ada@example.org",
                schema_version=3,
            ),
            event("customer-7", "CustomerRenamed", {"name": "Ada L."}),
        ],
        expected={"customer-7": NO_STREAM},
    )
    assert isinstance(commit, Commit)
    assert len(commit) == 2
    assert repr(commit) == "Commit(2 events, positions 1..2)"
    first, second = commit
    assert first == commit[0] and commit[1:] == [second]
    assert first.position == 1 and first.version == 1
    assert (first.stream_id, first.stream_type, first.event_type) == (
        "customer-7",
        "Customer",
        "CustomerRegistered",
    )
    assert first.payload == '{"address":"1 Loop Road","name":"Ada"}'  # canonical: sorted, compact
    assert first.data == {"name": "Ada", "address": "1 Loop Road"}
    assert first.schema_version == 3 and second.schema_version == 1
    assert first.recorded_at == T0 == second.recorded_at  # one clock reading per commit
    assert (first.event_id, first.command_id, first.correlation_id, first.causation_id) == (
        "e-1",
        "cmd-1",
        "corr-1",
        "cause-1",
    )
    assert first.actor == "ada@example.org"
    assert second.event_id == seeded_ids(0)()  # an event without an id gets one from `ids`
    assert (second.command_id, second.actor) == ("", "")
    assert len(first.hash) == 64 and int(first.hash, 16) >= 0
    assert commit.table.schema == fmt.SCHEMA
    assert commit.events == log.read()


def test_each_hash_is_sha256_of_the_previous_hash_and_the_rows_canonical_bytes(
    history: EventLog,
) -> None:
    previous = bytes(32)
    for row in history.scan().to_pylist():
        assert row["hash"] == hashlib.sha256(previous + canonical_bytes(row)).digest()
        previous = row["hash"]
    assert history.read()[-1].hash == previous.hex()


ODD_PAYLOADS: list[Any] = [
    {"name": "Zoë 日本", "emoji": "\U0001f600"},
    {"f": 1e-05, "g": 1.5, "none": None},
    {"s": "},{", "t": "}{", "l": [{"a": 1}, {"b": [2, 3]}]},
    {"control": "\x1f\x7f\n", "big": 2**70, "flag": True},
]
PLAIN_PAYLOADS: list[Any] = [{"name": "Ada", "n": 1}, {"l": [{"a": 1}], "t": True}, {}]


def bulk_payload(i: int) -> Any:
    """Chunks of 1024 alternate: plain payloads (orjson's fast path), then odd ones (json's)."""
    kinds = PLAIN_PAYLOADS if (i // 1024) % 2 == 0 else ODD_PAYLOADS
    return kinds[i % len(kinds)]


def test_bulk_commits_hash_and_store_exactly_what_the_definitions_say(tmp_path: Path) -> None:
    """Batches past the encoder chunk, the hash slice and LARGE_COMMIT, dicts and JSON text,
    against this file's own canonical bytes and json.dumps."""
    expected_payloads = []
    with EventLog.create(tmp_path / "log", clock=fixed_clock(T0, MINUTE)) as log:  # random ids
        for size, as_text in [(5000, False), (4500, True), (70, False)]:
            streams = [f"s-{(len(expected_payloads) + i) // 3}" for i in range(size)]
            payloads = [bulk_payload(i) for i in range(size)]
            expected_payloads += [canonical_json(p) for p in payloads]
            if as_text:
                payloads = [canonical_json(p) for p in payloads]
            batch = [
                event(s, "E", p, actor="ada" if i % 7 else "", schema_version=1 + i // 4000)
                for i, (s, p) in enumerate(zip(streams, payloads, strict=True))
            ]
            log.append(batch, expected=dict.fromkeys(streams, ANY_VERSION))
        assert log.verify().ok
        rows = log.scan().to_pylist()
    assert [row["payload"] for row in rows] == expected_payloads
    previous = bytes(32)
    for row in rows:
        assert row["hash"] == hashlib.sha256(previous + canonical_bytes(row)).digest()
        previous = row["hash"]


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def test_a_commit_is_one_segment_named_by_its_positions_and_one_head_line(log: EventLog) -> None:
    log.append([event("a"), event("b")], expected={"a": NO_STREAM, "b": NO_STREAM})
    log.append([event("a")], expected={"a": 1})
    assert [p.name for p in segment_files(log)] == [
        "000000000001-000000000002.parquet",
        "000000000003-000000000003.parquet",
    ]
    entries, bad, torn = fmt.parse_ledger(log.head_path.read_bytes())
    assert (bad, torn) == ([], False)
    assert [e.segment.name for e in entries] == [p.name for p in segment_files(log)]
    for entry, path in zip(entries, segment_files(log), strict=True):
        assert entry.file_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entries[-1].last_hash == log.read()[-1].hash


def test_json_text_payloads_are_stored_exactly_as_given(log: EventLog) -> None:
    text = '{"b": 1,  "a": [1, 2]}'
    commit = log.append([event(payload=text)], expected={"customer-1": NO_STREAM})
    assert commit[0].payload == text
    assert log.read()[0].data == {"a": [1, 2], "b": 1}


def test_unicode_survives_a_round_trip(log: EventLog) -> None:
    log.append(
        [event("kunde-ä", "Registriert", {"name": "Zoë 🐍 日本"}, actor="rené")],
        expected={"kunde-ä": NO_STREAM},
    )
    (stored,) = log.read()
    assert (stored.stream_id, stored.data["name"], stored.actor) == (
        "kunde-ä",
        "Zoë 🐍 日本",
        "rené",
    )
    assert log.verify().ok


# --- expected versions ---------------------------------------------------------------------------


def test_no_stream_on_an_existing_stream_is_a_conflict_and_writes_nothing(log: EventLog) -> None:
    append_one(log, "customer-1")
    before = snapshot(log.path)
    with pytest.raises(ConcurrencyError) as caught:
        log.append([event("customer-1")], expected={"customer-1": NO_STREAM})
    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
        "customer-1",
        0,
        1,
    )
    assert "customer-1" in str(caught.value)
    assert snapshot(log.path) == before


def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(log: EventLog) -> None:
    for _ in range(3):
        append_one(log, "customer-1")
    before = snapshot(log.path)
    with pytest.raises(ConcurrencyError) as caught:
        log.append([event("customer-1")], expected={"customer-1": 2})
    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
        "customer-1",
        2,
        3,
    )
    assert str(caught.value) == (
        "stream 'customer-1' was expected at version 2, but it is at version 3"
    )
    assert snapshot(log.path) == before


def test_an_expected_version_on_a_stream_that_does_not_exist_is_a_conflict(log: EventLog) -> None:
    with pytest.raises(ConcurrencyError, match="'ghost' was expected at version 1"):
        log.append([event("ghost")], expected={"ghost": 1})
    assert log.position == 0
    assert segment_files(log) == []


def test_one_conflicting_stream_rejects_the_whole_batch(log: EventLog) -> None:
    append_one(log, "a")
    before = snapshot(log.path)
    with pytest.raises(ConcurrencyError) as caught:
        log.append([event("b"), event("a")], expected={"b": NO_STREAM, "a": 5})
    assert caught.value.stream_id == "a"
    assert snapshot(log.path) == before
    assert log.stream_version("b") == 0


def test_an_expected_version_for_a_stream_outside_the_batch_is_checked_too(log: EventLog) -> None:
    append_one(log, "guard")
    with pytest.raises(ConcurrencyError):
        log.append([event("a")], expected={"a": NO_STREAM, "guard": NO_STREAM})
    commit = log.append([event("a")], expected={"a": NO_STREAM, "guard": 1})
    assert commit[0].position == 2


def test_any_version_appends_whatever_the_streams_version(log: EventLog) -> None:
    assert log.append([event("a")], expected={"a": ANY_VERSION})[0].version == 1
    assert log.append([event("a"), event("a")], expected={"a": ANY_VERSION})[-1].version == 3


def test_a_conflicting_append_does_not_use_up_its_event_ids(log: EventLog) -> None:
    append_one(log, "a")
    with pytest.raises(ConcurrencyError):
        log.append([event("a", event_id="retry-me")], expected={"a": NO_STREAM})
    assert log.append([event("a", event_id="retry-me")], expected={"a": 1})[0].position == 2


# --- duplicate event ids -------------------------------------------------------------------------


def test_the_same_event_id_twice_in_one_batch_is_refused_and_nothing_is_written(
    log: EventLog,
) -> None:
    append_one(log, "a")
    before = snapshot(log.path)
    with pytest.raises(DuplicateEventError) as caught:
        log.append(
            [event("b", event_id="x"), event("b", event_id="y"), event("c", event_id="x")],
            expected={"b": NO_STREAM, "c": NO_STREAM},
        )
    assert caught.value.event_id == "x"
    assert "'x'" in str(caught.value)
    assert snapshot(log.path) == before


def test_an_event_id_already_in_the_log_is_refused_and_nothing_is_written(log: EventLog) -> None:
    append_one(log, "a", event_id="e-1")
    append_one(log, "b", event_id="e-2")
    before = snapshot(log.path)
    with pytest.raises(DuplicateEventError, match="'e-1'"):
        log.append([event("c", event_id="new"), event("c", event_id="e-1")], expected={"c": 0})
    assert snapshot(log.path) == before


def test_an_event_id_already_in_the_log_is_refused_after_reopening(tmp_path: Path) -> None:
    with new_log(tmp_path / "log") as first:
        append_one(first, "a", event_id="e-1")
        first.compact(target_rows=10)  # also after its segment was rewritten
        append_one(first, "a", event_id="e-2")
        first.compact(target_rows=10)
    before = snapshot(tmp_path / "log")
    with EventLog.open(tmp_path / "log") as reopened:
        with pytest.raises(DuplicateEventError, match="'e-1'"):
            append_one(reopened, "b", event_id="e-1")
        assert snapshot(tmp_path / "log") == before
        assert append_one(reopened, "b", event_id="e-3")[0].position == 3


def test_a_repeated_id_is_found_in_big_and_small_commits_and_the_first_repeat_is_named(
    log: EventLog,
) -> None:
    sizes = [1500, 3000, 1200, 5, 2000, 7]  # big ones land in merged arrays, small ones in a set
    done = 0
    for size in sizes:
        streams = {f"s-{done + i}": NO_STREAM for i in range(size)}
        given = [event(s, event_id=f"id-{done + i}") for i, s in enumerate(streams)]
        log.append(given, expected=streams)
        done += size
    before = snapshot(log.path)
    for repeat in ("id-0", "id-4500", "id-5702", "id-7710"):
        batch = [event("new", event_id=f"fresh-{i}") for i in range(1500)]
        batch[700] = event("new", event_id=repeat)
        batch[900] = event("new", event_id="id-1")
        with pytest.raises(DuplicateEventError, match=f"'{repeat}'"):
            log.append(batch, expected={"new": NO_STREAM})
    assert snapshot(log.path) == before


@pytest.mark.parametrize("size", [100, 1500])
def test_ids_made_in_bulk_are_known_to_later_appends_and_after_reopening(
    tmp_path: Path, size: int
) -> None:
    with new_log(tmp_path / "log") as log:
        streams = {f"s-{i}": NO_STREAM for i in range(size)}
        made = log.append([event(stream) for stream in streams], expected=streams)
        made_ids = [e.event_id for e in made.events]
        with pytest.raises(DuplicateEventError, match=made_ids[size // 2]):
            append_one(log, "other", event_id=made_ids[size // 2])
        batch = [event("other", event_id=f"given-{i}") for i in range(99)] + [
            event("other", event_id=made_ids[-1])
        ]
        with pytest.raises(DuplicateEventError, match=made_ids[-1]):
            log.append(batch, expected={"other": ANY_VERSION})
    with EventLog.open(tmp_path / "log") as reopened:
        with pytest.raises(DuplicateEventError, match=made_ids[0]):
            append_one(reopened, "other", event_id=made_ids[0])
        assert append_one(reopened, "other", event_id="x" * 32)[0].position == size + 1


class Colliding(str):
    """An id whose Python hash collides with every other such id."""

    def __hash__(self) -> int:
        return 42


def test_an_id_whose_hash_collides_with_a_stored_ones_is_still_accepted(log: EventLog) -> None:
    log.append([event("a", event_id=Colliding("stored"))], expected={"a": NO_STREAM})
    many = [event("b", event_id=f"x-{i}") for i in range(1200)] + [
        event("b", event_id=Colliding("new"))
    ]
    log.append(many, expected={"b": NO_STREAM})
    assert log.append([event("c", event_id=Colliding("newer"))], expected={"c": 0})
    with pytest.raises(DuplicateEventError, match="'new'"):
        log.append([event("c", event_id=Colliding("new"))], expected={"c": 1})


def test_the_ids_looked_up_are_not_mistaken_for_other_ids_added_next(tmp_path: Path) -> None:
    index = EventIdIndex(tmp_path)
    index._in_files = lambda event_id: True  # type: ignore[method-assign]  # hits count as held
    looked_up, added = [f"a-{i}" for i in range(1500)], [f"b-{i}" for i in range(1500)]
    assert index.first_known(looked_up) is None
    index.add(added)
    assert index.first_known(["zzz", *looked_up]) is None
    assert index.first_known(["zzz", "b-77", "b-3"]) == "b-77"


# --- bad input -----------------------------------------------------------------------------------

CONTROL_CHARACTERS = ["\n", "\r", "\t", "\x00", "\x1f"]

BAD_BATCHES = {
    "empty batch": ([], {}, "at least one event"),
    "missing expected version": ([event("a"), event("b")], {"a": 0}, "expected version.*'b'"),
    "empty stream_id": ([event("")], {"": 0}, "stream_id"),
    "blank stream_id": ([event("   ")], {"   ": 0}, "stream_id"),
    "empty stream_type": ([event("a", stream_type="")], {"a": 0}, "stream_type"),
    "empty event_type": ([event("a", "")], {"a": 0}, "event_type"),
    "non-string stream_id": ([event(7)], {7: 0}, "stream_id must be text"),
    "non-string event_id": ([event("a", event_id=42)], {"a": 0}, "event_id must be text"),
    "non-string actor": ([event("a", actor=3)], {"a": 0}, "actor must be text"),
    "schema_version 0": ([event("a", schema_version=0)], {"a": 0}, "schema_version 0"),
    "schema_version 40000": ([event("a", schema_version=40000)], {"a": 0}, "40000"),
    "schema_version text": ([event("a", schema_version="1")], {"a": 0}, "schema_version"),
    "payload with a datetime": ([event("a", payload={"at": T0})], {"a": 0}, "payload"),
    "payload with a set": ([event("a", payload={"s": {1}})], {"a": 0}, "payload"),
    "payload text that is an array": ([event("a", payload="[1]")], {"a": 0}, "JSON object"),
    "payload text that is a number": ([event("a", payload="1")], {"a": 0}, "JSON object"),
    "payload text that is not JSON": ([event("a", payload="{bad")], {"a": 0}, "not valid JSON"),
    "payload text of two objects": ([event("a", payload="{}{}")], {"a": 0}, "not valid JSON"),
    "payload text that is empty": ([event("a", payload="")], {"a": 0}, "payload"),
    "payload text with garbage after": (
        [event("a", payload='{"a":1} x')],
        {"a": 0},
        "not valid JSON",
    ),
    "second payload bad": (
        [event("a", payload="{}"), event("a", payload="[]")],
        {"a": 0},
        "payload #1",
    ),
}
for _char in CONTROL_CHARACTERS:
    for _field in ("stream_id", "event_id", "command_id", "correlation_id", "actor"):
        _values = {_field: f"x{_char}y"}
        _stream = _values.pop("stream_id", "a")
        BAD_BATCHES[f"{_char!r} in {_field}"] = (
            [event(_stream, **_values)],
            {_stream: 0},
            "control characters",
        )


@pytest.mark.parametrize(
    ("events", "expected", "message"), BAD_BATCHES.values(), ids=list(BAD_BATCHES)
)
def test_bad_input_gets_a_clear_message_and_writes_nothing(
    log: EventLog, events: list[NewEvent], expected: dict[str, int], message: str
) -> None:
    append_one(log, "setup")
    before = snapshot(log.path)
    with pytest.raises(InvalidEventError, match=message):
        log.append(events, expected=expected)
    assert snapshot(log.path) == before
    assert positions(log.read()) == [1]


NON_JSON_PAYLOADS = {
    "a list, not a mapping": [[1, 2]],
    "NaN": [{"x": float("nan")}],
    "Infinity": [{"x": float("inf")}],
    # Each starts with "{" and the two lines together parse as two JSON objects, yet neither
    # payload is one on its own.
    "JSON text split across two payloads": ['{"a":', "{}}{}"],
}


@pytest.mark.parametrize("payloads", NON_JSON_PAYLOADS.values(), ids=list(NON_JSON_PAYLOADS))
def test_a_payload_that_is_not_one_json_object_is_refused(
    log: EventLog, payloads: list[Any]
) -> None:
    with pytest.raises(InvalidEventError):
        log.append([event("a", payload=p) for p in payloads], expected={"a": 0})
    assert segment_files(log) == []


def test_every_stored_payload_parses_as_a_json_object(log: EventLog) -> None:
    for payload in ({"x": 1.5}, '{"y":[true,null]}', {"z": "\x1f\n"}):
        append_one(log, payload=payload)
    for stored in log.read():
        assert isinstance(json.loads(stored.payload), dict)


def test_an_empty_log_cannot_be_created_over_an_existing_one(log: EventLog) -> None:
    append_one(log)
    with pytest.raises(InvalidEventError, match="already holds an event log"):
        EventLog.create(log.path)
    assert positions(log.read()) == [1]


def test_opening_a_folder_that_is_not_a_log_names_it(tmp_path: Path) -> None:
    with pytest.raises(LogNotFoundError, match=str(tmp_path / "nothing")):
        EventLog.open(tmp_path / "nothing")


# --- reads ---------------------------------------------------------------------------------------

READS = {
    "everything": ({}, [1, 2, 3, 4, 5, 6]),
    "one stream": ({"stream_id": "c-1"}, [1, 3, 6]),
    "a stream nobody wrote": ({"stream_id": "nobody"}, []),
    "after": ({"after": 2}, [3, 4, 5, 6]),
    "after the end": ({"after": 6}, []),
    "upto": ({"upto": 4}, [1, 2, 3, 4]),
    "upto zero": ({"upto": 0}, []),
    "after and upto": ({"after": 2, "upto": 4}, [3, 4]),
    "after and upto inside one segment": ({"after": 4, "upto": 5}, [5]),
    "until": ({"until": T0 + MINUTE}, [1, 2, 3]),
    "until between commits": ({"until": T0 + 90 * timedelta(seconds=1)}, [1, 2, 3]),
    "until before the first": ({"until": T0 - MINUTE}, []),
    "stream and after": ({"stream_id": "c-2", "after": 2}, [4]),
    "stream and until": ({"stream_id": "c-1", "until": T0 + 2 * MINUTE}, [1, 3]),
    "everything at once": (
        {"stream_id": "c-1", "after": 1, "upto": 6, "until": T0 + 9 * MINUTE},
        [3, 6],
    ),
}


@pytest.mark.parametrize(("filters", "expected"), READS.values(), ids=list(READS))
def test_reads_filter_by_stream_position_and_time(
    history: EventLog, filters: dict[str, Any], expected: list[int]
) -> None:
    assert positions(history.read(**filters)) == expected
    assert history.scan(**filters)["position"].to_pylist() == expected


def test_readers_see_their_own_and_other_writers_commits_in_order(tmp_path: Path) -> None:
    # A log takes in its own HEAD line without reading it back; another writer's lines in
    # between must still be read, and the files stay those a fresh reader finds.
    ours, theirs = new_log(tmp_path / "log"), EventLog.open(tmp_path / "log")
    for k, writer in enumerate([ours, ours, theirs, ours, theirs, theirs, ours], start=1):
        append_one(writer, f"c-{k}")
        for log in (ours, theirs):
            assert positions(log.read()) == list(range(1, k + 1))
        with EventLog.open(tmp_path / "log") as fresh:
            assert ours.files() == theirs.files() == fresh.files()
    ours.compact()
    append_one(ours, "c-8")
    with EventLog.open(tmp_path / "log") as fresh:
        assert ours.files() == theirs.files() == fresh.files()
        assert positions(ours.read()) == positions(fresh.read()) == list(range(1, 9))


def test_reading_one_stream_gives_its_versions_in_order(history: EventLog) -> None:
    stream = history.read(stream_id="c-1")
    assert [(e.version, e.event_type) for e in stream] == [
        (1, "Registered"),
        (2, "Renamed"),
        (3, "Deleted"),
    ]


def test_read_filters_are_keyword_only(history: EventLog) -> None:
    with pytest.raises(TypeError):
        history.read("c-1")  # type: ignore[misc]
    with pytest.raises(TypeError):
        history.scan("c-1")  # type: ignore[misc]


def test_scan_returns_only_the_columns_asked_for(history: EventLog) -> None:
    table = history.scan(stream_id="c-2", columns=["event_type", "version"])
    assert table.column_names == ["event_type", "version"]
    assert table.to_pylist() == [
        {"event_type": "Registered", "version": 1},
        {"event_type": "Renamed", "version": 2},
    ]


def relation_rows(log: EventLog, **filters: Any) -> list[dict[str, Any]]:
    con = duckdb.connect()
    try:
        return log.relation(con, **filters).order("position").to_arrow_table().to_pylist()
    finally:
        con.close()


@pytest.mark.parametrize(
    "filters", [{}, {"after": 2}, {"upto": 4}, {"after": 1, "upto": 5}, {"after": 6}]
)
def test_read_scan_and_relation_give_the_same_rows(
    history: EventLog, filters: dict[str, int]
) -> None:
    scanned = history.scan(**filters).to_pylist()
    recorded = history.read(**filters)
    assert [r.position for r in recorded] == [row["position"] for row in scanned]
    assert [{**row, "hash": row["hash"].hex()} for row in scanned] == [
        {name: getattr(r, name) for name in fmt.COLUMNS} for r in recorded
    ]
    assert relation_rows(history, **filters) == scanned


def test_the_relation_is_a_duckdb_relation_sql_can_query(history: EventLog) -> None:
    con = duckdb.connect()
    history.relation(con).create_view("events")
    rows = con.execute(
        """
        SELECT stream_id, max(version) AS version
        FROM events
        GROUP BY stream_id
        ORDER BY stream_id
        """
    ).fetchall()
    assert rows == [("c-1", 3), ("c-2", 2), ("c-3", 1)]


def test_files_can_be_handed_to_duckdb_read_parquet(history: EventLog) -> None:
    files = [str(p) for p in history.files()]
    assert len(files) == 4
    rows = duckdb.execute(
        """
        SELECT position, stream_id, version
        FROM read_parquet(?)
        ORDER BY position
        """,
        [files],
    ).fetchall()
    assert rows == [(e.position, e.stream_id, e.version) for e in history.read()]


def test_files_after_and_upto_list_only_the_segments_needed(history: EventLog) -> None:
    assert [p.name for p in history.files(after=3, upto=4)] == ["000000000004-000000000005.parquet"]
    assert [p.name for p in history.files(after=6)] == []
    assert len(history.files(after=2, upto=6)) == 3


def test_an_empty_log_reads_as_empty_everywhere(log: EventLog) -> None:
    assert log.read() == []
    assert log.scan().num_rows == 0
    assert log.scan().schema == fmt.SCHEMA
    assert log.files() == []
    assert log.position == 0
    assert log.stream_version("anything") == 0
    con = duckdb.connect()
    empty = log.relation(con).to_arrow_table()
    assert empty.num_rows == 0
    assert empty.column_names == list(fmt.COLUMNS)
    assert log.verify().ok


# --- the files are real Parquet ------------------------------------------------------------------


def test_duckdb_reads_the_segments_with_the_designed_types(history: EventLog) -> None:
    files = [str(p) for p in history.files()]
    con = duckdb.connect()
    types = dict(
        (name, kind)
        for name, kind, *_ in con.execute(
            "DESCRIBE SELECT * FROM read_parquet(?)", [files]
        ).fetchall()
    )
    assert types["position"] == "BIGINT"
    assert types["version"] == "BIGINT"
    assert types["schema_version"] == "SMALLINT"
    assert types["recorded_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["hash"] == "BLOB"
    assert list(types) == list(fmt.COLUMNS)
    lengths = con.execute(
        "SELECT min(octet_length(hash)), max(octet_length(hash)) FROM read_parquet(?)", [files]
    ).fetchall()
    assert lengths == [(32, 32)]


def test_the_parquet_schema_is_the_event_row_of_the_design(history: EventLog) -> None:
    for path in history.files():
        schema = pq.read_schema(path)
        assert schema.field("position").type == pa.int64()
        assert schema.field("recorded_at").type == pa.timestamp("us", tz="UTC")
        assert schema.field("hash").type == pa.binary(32)
        assert schema.equals(fmt.SCHEMA)


def test_a_flipped_byte_in_a_data_page_makes_scan_fail_naming_the_file(log: EventLog) -> None:
    append_one(log, payload={"marker": "MMMMMMMMMMMMMMMMMMMMMMMM"})
    (path,) = segment_files(log)
    flip(path, path.read_bytes().index(b"MMMMMMMMMMMMMMMMMMMMMMMM") + 10)
    with pytest.raises(CorruptLogError, match=str(path)):
        log.scan()
    with pytest.raises(CorruptLogError, match=str(path)):
        log.read()


def test_a_flipped_footer_byte_never_makes_scan_return_wrong_data(tmp_path: Path) -> None:
    # Page checksums do not cover the footer (column types, nullability, ...): a bit flipped
    # there must still end in CorruptLogError naming the file, or in the very same rows.
    with new_log(tmp_path / "log") as log:
        log.append(
            [event(f"s-{j}", payload={"i": j}) for j in range(3)],
            expected={f"s-{j}": NO_STREAM for j in range(3)},
        )
        good = log.scan()
        (path,) = segment_files(log)
        original = path.read_bytes()
        wrong = []
        for offset in footer_offsets(original):
            flip(path, offset, 0x10)
            try:
                table = log.scan()
                if not table.equals(good):
                    wrong.append(f"offset {offset}: different rows or schema")
            except CorruptLogError as error:
                if str(path) not in str(error):
                    wrong.append(f"offset {offset}: error without the file name")
            except Exception as error:
                wrong.append(f"offset {offset}: {type(error).__name__}")
            path.write_bytes(original)
    assert wrong == []


# --- injected clock and ids ----------------------------------------------------------------------


def build_log(path: Path) -> None:
    with new_log(path, seed=11) as log:
        log.append([event("a"), event("b", payload={"x": [1, "é"]})], expected={"a": 0, "b": 0})
        for i in range(5):
            append_one(log, "a", payload={"i": i})
        log.compact(target_rows=4)
        append_one(log, "c", actor="ada")


def test_the_same_clock_ids_and_appends_make_byte_identical_logs(tmp_path: Path) -> None:
    build_log(tmp_path / "one")
    build_log(tmp_path / "two")
    one, two = snapshot(tmp_path / "one"), snapshot(tmp_path / "two")
    assert "HEAD" in one and len(one) >= 4
    assert one == two


def test_different_seeds_make_different_event_ids(tmp_path: Path) -> None:
    with new_log(tmp_path / "one", seed=1) as one, new_log(tmp_path / "two", seed=2) as two:
        assert append_one(one)[0].event_id != append_one(two)[0].event_id


def test_recorded_at_never_goes_back_even_when_the_clock_does(tmp_path: Path) -> None:
    readings = iter([T0 + 10 * MINUTE, T0 + 5 * MINUTE, T0, T0 + 20 * MINUTE])
    with EventLog.create(tmp_path / "log", clock=lambda: next(readings)) as log:
        for _ in range(4):
            append_one(log)
        assert [e.recorded_at for e in log.read()] == [T0 + 10 * MINUTE] * 3 + [T0 + 20 * MINUTE]
    with EventLog.open(tmp_path / "log", clock=lambda: T0 - timedelta(days=1)) as reopened:
        assert append_one(reopened)[0].recorded_at == T0 + 20 * MINUTE


# --- verify --------------------------------------------------------------------------------------


@pytest.fixture
def three(log: EventLog) -> EventLog:
    """Three segments: positions 1..2, 3..4, 5..6."""
    for i in range(3):
        log.append(
            [event("a", payload={"i": i}), event("b")],
            expected={"a": ANY_VERSION, "b": ANY_VERSION},
        )
    return log


def problems_in(log: EventLog, name: str) -> list[str]:
    report = log.verify()
    assert report.ok is False
    return [str(f) for f in report.findings if f.file == name]


def test_an_intact_log_verifies_ok(three: EventLog) -> None:
    report = three.verify()
    assert report.ok is True
    assert (report.findings, report.notices) == ([], [])
    assert (report.events, report.segments) == (6, 3)
    assert str(report).startswith(f"{three.path}: OK (6 events in 3 segments)")


@pytest.mark.parametrize("which", [0, 1, 2], ids=["first", "middle", "last"])
@pytest.mark.parametrize("where", ["start", "middle", "footer"])
def test_verify_finds_a_flipped_byte_in_any_segment(
    three: EventLog, which: int, where: str
) -> None:
    path = segment_files(three)[which]
    size = path.stat().st_size
    offset = {"start": 0, "middle": size // 2, "footer": size - 12}[where]
    flip(path, offset)
    assert problems_in(three, path.name)


def test_verify_finds_a_deleted_tail_segment(three: EventLog) -> None:
    segment_files(three)[-1].unlink()
    report = three.verify()
    assert report.ok is False
    (finding,) = report.findings
    assert finding.file == fmt.segment_name(5, 6)
    assert "recorded in HEAD" in finding.message and "5..6 are missing" in finding.message


def test_verify_finds_a_truncated_tail_segment(three: EventLog) -> None:
    path = segment_files(three)[-1]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert any("unreadable" in p for p in problems_in(three, path.name))


def test_an_unreadable_segment_is_the_only_one_verify_blames(three: EventLog) -> None:
    # Streams a and b move on inside the unreadable middle segment; the next one is not at fault.
    middle = segment_files(three)[1]
    middle.write_bytes(middle.read_bytes()[: middle.stat().st_size // 2])

    report = three.verify()

    assert {finding.file for finding in report.findings} == {middle.name}


def test_after_an_unreadable_segment_a_stream_going_back_is_still_caught(
    three: EventLog,
) -> None:
    middle, last = segment_files(three)[1], segment_files(three)[2]
    middle.write_bytes(middle.read_bytes()[: middle.stat().st_size // 2])
    table = pq.read_table(last)
    versions = pa.array([1, 3], pa.int64())  # stream a back at v1 (it was at 2 before the gap)
    pq.write_table(
        table.set_column(
            table.schema.get_field_index("version"), table.schema.field("version"), versions
        ),
        last,
    )

    assert any("'a' jumps to version 1" in p for p in problems_in(three, last.name))


def test_verify_finds_two_rows_swapped(three: EventLog) -> None:
    path = segment_files(three)[1]
    pq.write_table(pq.read_table(path).take([1, 0]), path)
    found = problems_in(three, path.name)
    assert any("at position 4" in p for p in found)
    assert any("expected position 3" in p for p in found)


def test_verify_finds_an_edited_payload(three: EventLog) -> None:
    path = segment_files(three)[1]
    table = pq.read_table(path)
    payloads = pa.array(['{"i":99}', table["payload"][1].as_py()], pa.string())
    pq.write_table(table.set_column(6, fmt.SCHEMA.field("payload"), payloads), path)
    found = problems_in(three, path.name)
    assert any("at position 3" in p and "row hash" in p for p in found)


def test_verify_finds_a_gap_where_a_middle_segment_was_deleted(three: EventLog) -> None:
    files = segment_files(three)
    files[1].unlink()
    found = problems_in(three, files[1].name)  # the finding names the file that is gone
    assert any("positions 3..4 are missing" in p for p in found)


def test_verify_finds_a_duplicate_position_even_with_hashes_and_head_forged(
    three: EventLog,
) -> None:
    path = segment_files(three)[-1]
    table = pq.read_table(path)
    forged = table.set_column(0, fmt.SCHEMA.field("position"), pa.array([5, 5], pa.int64()))
    rewrite_consistently(three.path, path.name, forged)
    found = problems_in(three, path.name)
    assert any("at position 5" in p and "expected position 6" in p for p in found)


def test_verify_finds_a_duplicate_version_even_with_hashes_and_head_forged(
    three: EventLog,
) -> None:
    path = segment_files(three)[-1]
    table = pq.read_table(path)
    forged = table.set_column(3, fmt.SCHEMA.field("version"), pa.array([2, 3], pa.int64()))
    rewrite_consistently(three.path, path.name, forged)
    found = problems_in(three, path.name)
    assert any("at position 5" in p and "'a' jumps to version 2" in p for p in found)


def test_verify_finds_an_unknown_file(three: EventLog) -> None:
    (three.events_dir / "notes.txt").write_text("hello")
    assert problems_in(three, "notes.txt")


def test_verify_finds_a_malformed_head_line(three: EventLog) -> None:
    with open(three.head_path, "ab") as head:
        head.write(b"this is not a ledger line\n")
    assert any("malformed" in p for p in problems_in(three, "HEAD"))


def test_verify_finds_a_forged_last_hash_in_head(three: EventLog) -> None:
    lines = three.head_path.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0][:-65] + b"0" * 64 + b"\n"
    three.head_path.write_bytes(b"".join(lines))
    assert any("HEAD" in p for p in problems_in(three, segment_files(three)[0].name))


def test_a_leftover_temp_file_is_a_notice_not_a_problem(three: EventLog) -> None:
    (three.events_dir / ".000000000007-000000000007.parquet.tmp").write_bytes(b"PAR1 half")
    report = three.verify()
    assert report.ok is True
    assert [n.file for n in report.notices] == [".000000000007-000000000007.parquet.tmp"]


# --- leftovers and foreign files -----------------------------------------------------------------


def test_opening_a_log_with_a_leftover_temp_file_warns_and_the_next_append_removes_it(
    three: EventLog,
) -> None:
    temp = three.events_dir / ".000000000007-000000000007.parquet.tmp"
    temp.write_bytes(b"PAR1 torn")
    with pytest.warns(UserWarning, match=temp.name) as caught:
        reopened = EventLog.open(three.path)
    assert len(caught) == 1
    with reopened:
        assert positions(reopened.read()) == [1, 2, 3, 4, 5, 6]
        assert append_one(reopened)[0].position == 7
    assert not temp.exists()
    assert three.verify().notices == []


def test_opening_a_log_with_a_foreign_file_warns_naming_it(three: EventLog) -> None:
    foreign = three.events_dir / "_stray.parquet"
    foreign.write_bytes(b"not parquet at all")
    with pytest.warns(UserWarning, match="_stray.parquet"), EventLog.open(three.path) as reopened:
        assert positions(reopened.read()) == [1, 2, 3, 4, 5, 6]
        assert relation_rows(reopened)[-1]["position"] == 6
        assert append_one(reopened)[0].position == 7
    assert foreign.exists()  # not ours to delete


def test_an_intact_log_opens_without_warnings(three: EventLog) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EventLog.open(three.path).close()


def test_a_torn_segment_beyond_a_gap_is_not_read_and_verify_names_it(three: EventLog) -> None:
    torn = three.events_dir / fmt.segment_name(9, 9)
    torn.write_bytes(b"PAR1\x00\x00 no footer")
    with pytest.warns(UserWarning, match=torn.name), EventLog.open(three.path) as reopened:
        assert positions(reopened.read()) == [1, 2, 3, 4, 5, 6]
        assert reopened.position == 6
        assert relation_rows(reopened)[-1]["position"] == 6
    assert any("7..8 are missing" in p for p in problems_in(three, torn.name))


def test_reads_never_fail_because_of_temp_files(three: EventLog) -> None:
    for name in (
        ".000000000007-000000000007.parquet.tmp",
        ".000000000001-000000000009.parquet.tmp",
    ):
        (three.events_dir / name).write_bytes(b"garbage")
    assert positions(three.read()) == [1, 2, 3, 4, 5, 6]
    assert three.scan(after=5).num_rows == 1
    assert len(relation_rows(three)) == 6
    assert three.position == 6


# --- recovery after a killed writer --------------------------------------------------------------

NEW_WRITER, RUNNING_WRITER = "a new writer", "a writer that was already running"


def writing(log: EventLog, writer: str) -> contextlib.AbstractContextManager[EventLog]:
    """`log` itself (its view of HEAD already loaded), or a fresh instance on its folder."""
    return open_quietly(log.path) if writer == NEW_WRITER else contextlib.nullcontext(log)


def test_a_published_but_unrecorded_commit_is_a_notice_and_is_not_read_until_recorded(
    three: EventLog,
) -> None:
    # Readers read what HEAD records: a segment whose writer stopped between publishing and
    # recording is not read until the next writer records it again (or rolls it back).
    drop_last_head_line(three.path)
    report = three.verify()
    assert report.ok is True
    assert [n.file for n in report.notices] == [fmt.segment_name(5, 6)]
    with open_quietly(three.path) as reader:
        assert positions(reader.read()) == [1, 2, 3, 4]
        assert len(relation_rows(reader)) == 4


@pytest.mark.parametrize("writer", [NEW_WRITER, RUNNING_WRITER])
@pytest.mark.parametrize("size", [1, 3], ids=["same size", "another size"])
def test_the_next_append_first_records_a_published_but_unrecorded_commit(
    three: EventLog, writer: str, size: int
) -> None:
    # `three` has appended already, so its view of HEAD is loaded: it plays a process that was
    # running while another one (`dying`) stopped between publishing and recording. The commit
    # was durable (its segment published): it is kept, and the next commit lands after it, also
    # when it is larger than the lost one (no second segment may ever start at position 7).
    with writing(three, writer) as appender:
        with open_quietly(three.path) as dying:
            append_one(dying, "b", event_id="from-the-dying-writer")  # position 7, not acked
        lost_line = drop_last_head_line(three.path)
        batch = [event("a") for _ in range(size)]
        commit = appender.append(batch, expected={"a": 3})
    assert (commit[0].position, commit[0].version) == (8, 4)
    lines = three.head_path.read_bytes().splitlines(keepends=True)
    assert lines[3] == lost_line  # recorded again, byte for byte
    assert len(lines) == 5
    assert [p.name for p in segment_files(three)][-2:] == [
        fmt.segment_name(7, 7),
        fmt.segment_name(8, 7 + size),
    ]
    with open_quietly(three.path) as reader:
        events = reader.read()
        assert positions(events) == list(range(1, 8 + size))
        assert events[6].event_id == "from-the-dying-writer"
        assert (events[6].stream_id, events[6].version) == ("b", 4)
        report = reader.verify()
    assert (report.ok, report.notices) == (True, [])


def test_a_stale_expected_version_after_a_recorded_leftover_is_a_concurrency_error(
    three: EventLog,
) -> None:
    # The running writer expected stream b at version 3; the leftover it records first made it 4.
    with open_quietly(three.path) as dying:
        append_one(dying, "b")
    drop_last_head_line(three.path)
    before = three.head_path.read_bytes()
    with pytest.raises(ConcurrencyError, match=r"'b'.*3.*4"):
        three.append([event("b")], expected={"b": 3})
    assert len(three.head_path.read_bytes().splitlines()) == len(before.splitlines()) + 1
    assert positions(three.read()) == list(range(1, 8))


@pytest.mark.parametrize("lost", [1, 3])
def test_commits_whose_head_lines_a_power_cut_lost_are_recorded_again(
    log: EventLog, lost: int
) -> None:
    # HEAD's lines are not flushed one by one: a power cut may lose the last ones (and leave
    # zeros where the file grew). Every acknowledged commit's segment is on disk, so none is lost.
    commits = [append_one(log, f"s-{n}") for n in range(5)]
    head = log.head_path.read_bytes()
    kept = b"".join(head.splitlines(keepends=True)[:-lost])
    log.head_path.write_bytes(kept + bytes(37))  # the lost lines' bytes read back as zeros
    with open_quietly(log.path) as reopened:
        assert append_one(reopened, "after")[0].position == 6
        assert [e.event_id for e in reopened.read()][:5] == [c[0].event_id for c in commits]
        assert reopened.head_path.read_bytes().startswith(head)
        assert reopened.verify().notices == []


def test_an_append_interrupted_between_publishing_and_recording_is_recorded_by_the_next(
    log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # E.g. KeyboardInterrupt in a notebook, or a full disk when HEAD grows.
    append_one(log, "a")

    def interrupted(self: object, entry: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(WriterState, "_record", interrupted)
        with pytest.raises(KeyboardInterrupt):
            log.append([event("b"), event("b")], expected={"b": NO_STREAM})
    commit = log.append([event("c")], expected={"c": NO_STREAM})  # not at position 2
    assert commit[0].position == 4
    assert [(e.stream_id, e.version) for e in log.read()] == [
        ("a", 1),
        ("b", 1),
        ("b", 2),
        ("c", 1),
    ]
    assert log.verify().notices == []


def test_a_compaction_flushes_head_before_it_removes_replaced_segments(
    three: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A power cut may lose HEAD lines that were not flushed: the compacted segment's line must be
    # on disk before the segments it replaces are gone.
    steps: list[str] = []
    head_inode = os.stat(three.head_path).st_ino
    real_fdatasync, real_unlink = os.fdatasync, Path.unlink

    def fdatasync(fd: int) -> None:
        if os.fstat(fd).st_ino == head_inode:
            steps.append("flush HEAD")
        real_fdatasync(fd)

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path.suffix == ".parquet":
            steps.append("remove")
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(Path, "unlink", unlink)
    three.compact(keep_replaced_for=0)
    assert steps == ["flush HEAD", "remove", "remove", "remove"]


@pytest.mark.parametrize("writer", [NEW_WRITER, RUNNING_WRITER])
def test_a_torn_head_line_is_repaired_by_the_next_append(three: EventLog, writer: str) -> None:
    with open(three.head_path, "ab") as head:
        head.write(b"000000000007-0000000")
    report = three.verify()
    assert report.ok is True
    assert [n.file for n in report.notices] == ["HEAD"]
    with writing(three, writer) as appender:
        assert append_one(appender)[0].position == 7
    entries, bad, torn = fmt.parse_ledger(three.head_path.read_bytes())
    assert (bad, torn) == ([], False)
    assert [e.segment.last for e in entries] == [2, 4, 6, 7]
    assert three.verify().notices == []


def test_an_unrecorded_segment_is_rolled_back_whatever_it_holds(three: EventLog) -> None:
    drop_last_head_line(three.path)
    path = segment_files(three)[-1]
    table = pq.read_table(path)
    payloads = pa.array(['{"forged":1}', table["payload"][1].as_py()], pa.string())
    pq.write_table(table.set_column(6, fmt.SCHEMA.field("payload"), payloads), path)
    with open_quietly(three.path) as reopened:
        assert append_one(reopened)[0].position == 5
        assert not path.exists()
        assert '{"forged":1}' not in {e.payload for e in reopened.read()}
        assert reopened.verify().ok


def test_a_log_whose_tail_was_deleted_refuses_appends(three: EventLog) -> None:
    segment_files(three)[-1].unlink()
    with open_quietly(three.path) as reopened, pytest.raises(CorruptLogError, match="HEAD"):
        append_one(reopened)
    assert len(segment_files(three)) == 2


# --- compaction ----------------------------------------------------------------------------------


@pytest.fixture
def many(log: EventLog) -> EventLog:
    """Twelve one-event commits over three streams."""
    for i in range(12):
        append_one(log, f"s-{i % 3}", payload={"i": i})
    return log


def test_compaction_merges_small_segments_keeping_every_row_exactly(many: EventLog) -> None:
    before = many.scan()
    report = many.compact(target_rows=5, keep_replaced_for=0)
    assert (report.segments_before, report.segments_after) == (12, 3)
    assert report.written == [
        fmt.segment_name(1, 5),
        fmt.segment_name(6, 10),
        fmt.segment_name(11, 12),
    ]
    assert [p.name for p in segment_files(many)] == report.written
    assert many.scan().equals(before)
    assert many.verify().ok and many.verify().notices == []
    commit = append_one(many, "s-0")
    assert (commit[0].position, commit[0].version) == (13, 5)
    assert many.verify().ok


def test_compacting_again_merges_compacted_and_new_segments(many: EventLog) -> None:
    many.compact(target_rows=5, keep_replaced_for=0)
    for _ in range(3):
        append_one(many, "s-1")
    before = many.scan()
    many.compact(target_rows=100, keep_replaced_for=0)
    assert [p.name for p in segment_files(many)] == [fmt.segment_name(1, 15)]
    assert many.scan().equals(before)
    assert many.verify().ok


def test_compacting_a_compact_log_changes_nothing(many: EventLog) -> None:
    many.compact(target_rows=100, keep_replaced_for=0)
    before = snapshot(many.path)
    report = many.compact(target_rows=100, keep_replaced_for=0)
    assert (report.segments_before, report.segments_after, report.written) == (1, 1, [])
    assert snapshot(many.path) == before


def test_another_instance_reads_and_appends_after_a_compaction(many: EventLog) -> None:
    with open_quietly(many.path) as other:
        append_one(other, "s-2")  # loads its view of the head before the compaction
        many.compact(target_rows=4, keep_replaced_for=0)
        assert positions(other.read()) == list(range(1, 14))
        assert append_one(other, "s-2")[0].position == 14
    assert many.verify().ok


def crash_compaction(log: EventLog, *, recorded: bool) -> dict[str, bytes]:
    """Compact, then put back what a crash would have left: the narrow files (and old HEAD)."""
    narrow = {p.name: p.read_bytes() for p in segment_files(log)}
    head = log.head_path.read_bytes()
    log.compact(target_rows=100, keep_replaced_for=0)
    for name, data in narrow.items():
        (log.events_dir / name).write_bytes(data)
    if not recorded:
        log.head_path.write_bytes(head)
    return narrow


@pytest.mark.parametrize("recorded", [False, True], ids=["wide not recorded", "narrow not deleted"])
@pytest.mark.parametrize("tidy", ["append", "compact"])
def test_a_compaction_interrupted_at_any_step_reads_every_event_once_and_is_tidied_up(
    tmp_path: Path, recorded: bool, tidy: str
) -> None:
    with new_log(tmp_path / "log") as log:
        for i in range(6):
            append_one(log, f"s-{i % 2}", payload={"i": i})
        before = log.scan()
        narrow = crash_compaction(log, recorded=recorded)
    wide = fmt.segment_name(1, 6)
    with open_quietly(tmp_path / "log") as reopened:
        assert reopened.scan().equals(before)
        assert len(relation_rows(reopened)) == 6
        report = reopened.verify()
        assert report.ok is True
        # a recorded wide segment supersedes the narrow ones; an unrecorded one is rolled back
        leftovers = set(narrow) if recorded else {wide}
        assert {n.file for n in report.notices} >= leftovers
        if recorded:  # the wide segment was recorded long enough ago for its narrow ones to go
            old = time.time() - 2 * fmt.KEEP_REPLACED_SECONDS
            os.utime(reopened.events_dir / wide, (old, old))
        if tidy == "append":
            assert append_one(reopened, "s-0")[0].version == 4
        else:
            reopened.compact(target_rows=100, keep_replaced_for=0)
        entries, _, _ = fmt.parse_ledger(reopened.head_path.read_bytes())
        compacted = recorded or tidy == "compact"
        assert (wide in {e.segment.name for e in entries}) is compacted
        assert (reopened.events_dir / wide).exists() is compacted
        assert any((reopened.events_dir / name).exists() for name in narrow) is not compacted
        assert reopened.scan(upto=6).equals(before)
        report = reopened.verify()
        assert (report.ok, report.notices) == (True, [])


def edit_a_payload(path: Path) -> None:
    table = pq.read_table(path)
    payloads = pa.array(['{"forged":true}'], pa.string())
    pq.write_table(table.set_column(6, fmt.SCHEMA.field("payload"), payloads), path)


def flip_a_data_page_byte(path: Path) -> None:
    # PLAIN-encoded "s-1" (4-byte length, bytes) occurs only in the stream_id data page, a column
    # every reader needs; page headers and the footer spell their statistics differently.
    data = path.read_bytes()
    flip(path, data.index(b"\x03\x00\x00\x00s-1") + 5)


@pytest.mark.parametrize("tamper", [edit_a_payload, flip_a_data_page_byte])
def test_compaction_refuses_to_copy_a_tampered_segment_and_deletes_nothing(
    many: EventLog, tamper: Any
) -> None:
    tamper(segment_files(many)[4])  # positions 5, stream s-1
    before = snapshot(many.path)
    with open_quietly(many.path) as reopened, pytest.raises(CorruptLogError) as caught:
        reopened.compact(target_rows=100, keep_replaced_for=0)
    assert fmt.segment_name(5, 5) in str(caught.value)
    assert snapshot(many.path) == before


# --- two instances, one folder -------------------------------------------------------------------


def test_a_second_instance_sees_the_first_ones_commits_and_conflicts_properly(
    log: EventLog,
) -> None:
    with open_quietly(log.path) as other:
        append_one(log, "a")
        assert other.append([event("a")], expected={"a": 1})[0].position == 2
        with pytest.raises(ConcurrencyError) as caught:
            log.append([event("a")], expected={"a": 1})
        assert (caught.value.expected, caught.value.actual) == (1, 2)
        assert log.append([event("a")], expected={"a": 2})[0].position == 3
        assert other.append([event("b")], expected={"b": NO_STREAM})[0].position == 4
        assert positions(other.read()) == positions(log.read()) == [1, 2, 3, 4]
    assert log.verify().ok


def test_a_second_instance_refuses_an_event_id_the_first_one_used(log: EventLog) -> None:
    with open_quietly(log.path) as other:
        append_one(other, "b")
        append_one(log, "a", event_id="shared")
        with pytest.raises(DuplicateEventError, match="'shared'"):
            append_one(other, "b", event_id="shared")
    assert positions(log.read()) == [1, 2]


# --- the lock ------------------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pathlib import Path
from cqrs_lab.locking import FileLock
FileLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_an_append_while_another_process_holds_the_lock_names_the_lock_and_its_holder(
    log: EventLog,
) -> None:
    append_one(log)
    before = snapshot(log.path)
    lock_path = log.path / fmt.LOCK_FILE
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        log._lock.timeout = 0.2  # no public knob for the lock timeout yet
        with pytest.raises(StoreLockedError) as caught:
            append_one(log)
        assert str(lock_path) in str(caught.value)
        assert f"pid {holder.pid}" in str(caught.value)
        assert snapshot(log.path) == before
    finally:
        holder.kill()
        holder.wait()
    assert append_one(log)[0].position == 2  # the kernel released the dead holder's lock


def test_a_lock_knows_whether_another_holder_took_it_since_it_last_held_it(tmp_path: Path) -> None:
    path = tmp_path / "LOCK"
    first, second = FileLock(path), FileLock(path)  # two instances of one process
    takes = []
    for lock in (first, first, second, first, first):
        with lock:
            takes.append(lock.others_held)
    assert takes == [True, False, True, True, False]
    holder = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from cqrs_lab.locking import FileLock; FileLock(Path(sys.argv[1])).acquire()",
         str(path)],
        check=True,
    )  # fmt: skip
    assert holder.returncode == 0
    with first:
        assert first.others_held is True
    assert path.read_text().split()[0] == str(os.getpid())
    first.close()
    second.close()


def test_a_running_writer_recovers_only_when_someone_else_held_the_lock(
    three: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    recoveries = []
    real = WriterState.recover

    def counting(self: WriterState) -> list[str]:
        recoveries.append(self)
        return real(self)

    monkeypatch.setattr(WriterState, "recover", counting)
    for _ in range(3):
        append_one(three)
    assert recoveries == []  # the hot path: no folder listing
    with open_quietly(three.path) as other:
        append_one(other, "other")
    append_one(three)
    assert len(recoveries) == 2  # the other instance's first append (it loads), then ours


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """A lab folder holding a customer log and an order log."""
    with new_log(tmp_path / "lab" / "customer") as customers:
        customers.append(
            [event("customer-1"), event("customer-2")],
            expected={"customer-1": NO_STREAM, "customer-2": NO_STREAM},
        )
        append_one(customers, "customer-1", event_type="CustomerRenamed")
    with new_log(tmp_path / "lab" / "order") as orders:
        for i in range(3):
            append_one(orders, f"order-{i}", event_type="OrderPlaced", stream_type="Order")
    return tmp_path / "lab"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_log_info_describes_a_log(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(capsys, "log", "info", str(lab / "customer"))
    assert (status, err) == (0, "")
    assert f"{lab / 'customer'}: 2 segments" in out
    assert "3 events in 2 streams" in out
    assert "2  CustomerRegistered" in out and "1  CustomerRenamed" in out


def test_log_info_on_a_lab_folder_describes_every_log_in_it(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_cli(capsys, "log", "info", str(lab))
    assert status == 0
    assert f"{lab / 'customer'}: 2 segments" in out
    assert f"{lab / 'order'}: 3 segments" in out
    assert "3 events in 3 streams" in out and "3  OrderPlaced" in out


def test_log_verify_exits_0_on_an_intact_lab(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, "log", "verify", str(lab))
    assert status == 0
    assert f"{lab / 'customer'}: OK" in out and f"{lab / 'order'}: OK" in out


def test_log_verify_exits_1_on_a_tampered_log_naming_the_file(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flip(lab / "order" / "events" / fmt.segment_name(2, 2), 100)
    status, out, _ = run_cli(capsys, "log", "verify", str(lab))
    assert status == 1
    assert f"{lab / 'customer'}: OK" in out
    assert f"PROBLEM {fmt.segment_name(2, 2)}" in out


def test_log_compact_merges_segments(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(
        capsys, "log", "compact", str(lab / "order"), "--keep-replaced-for", "0"
    )
    assert status == 0
    assert "3 segments -> 1 (1 written)" in out
    assert [p.name for p in (lab / "order" / "events").iterdir()] == [fmt.segment_name(1, 3)]
    assert run_cli(capsys, "log", "verify", str(lab))[0] == 0


def test_log_compact_refuses_a_tampered_log_with_one_line_and_status_2(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_a_payload(lab / "order" / "events" / fmt.segment_name(2, 2))
    status, _, err = run_cli(capsys, "log", "compact", str(lab / "order"))
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("cqrs-lab: error: ")
    assert fmt.segment_name(2, 2) in err


@pytest.mark.parametrize("command", ["info", "verify", "compact"])
def test_a_bad_path_exits_2_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    status, out, err = run_cli(capsys, "log", command, str(tmp_path / "no-such-lab"))
    assert status == 2
    assert err == f"cqrs-lab: error: no event log at {tmp_path / 'no-such-lab'} " + (
        "(neither a log folder nor a lab folder)\n"
    )
    assert out == ""


def test_log_info_on_a_damaged_log_exits_2_with_one_line_naming_the_file(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = lab / "order" / "events" / fmt.segment_name(3, 3)
    path.write_bytes(path.read_bytes()[:100])
    status, _, err = run_cli(capsys, "log", "info", str(lab / "order"))
    assert status == 2
    assert err.count("\n") == 1 and path.name in err


def test_the_cli_reports_leftover_files_as_warnings_on_stderr(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (lab / "order" / "events" / ".000000000004-000000000004.parquet.tmp").write_bytes(b"x")
    status, out, err = run_cli(capsys, "log", "verify", str(lab / "order"))
    assert status == 0
    assert "note" in out
    assert err.startswith("warning: ") and ".000000000004-000000000004.parquet.tmp" in err


def test_the_installed_command_runs_in_its_own_process(lab: Path) -> None:
    flip(lab / "customer" / "events" / fmt.segment_name(3, 3), 0)
    done = subprocess.run(
        [sys.executable, "-m", "cqrs_lab.cli", "log", "verify", str(lab)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert f"PROBLEM {fmt.segment_name(3, 3)}" in done.stdout
    assert f"{lab / 'order'}: OK" in done.stdout
    assert "Traceback" not in done.stderr


def test_replaced_segments_stay_for_queries_that_were_handed_them_before_the_compaction(
    many: EventLog,
) -> None:
    con = duckdb.connect()
    query = many.relation(con)  # DuckDB opens the files only when the query runs
    report = many.compact(target_rows=5)  # default: keep replaced segments for a grace period
    assert len(report.written) > 0
    assert query.aggregate("count(*)").fetchall() == [(12,)]
    assert many.verify().ok
    with many._lock:  # once the grace period is over, a later compaction or recovery deletes them
        removed = many._writer_state().remove_replaced(older_than=0)
    assert removed and [p.name for p in segment_files(many)] == report.written
