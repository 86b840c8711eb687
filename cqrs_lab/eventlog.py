"""An append-only event log stored as plain Parquet files: the write store of one service.

    >>> log = EventLog.create(folder)
    >>> log.append([NewEvent(stream_id="customer-7", stream_type="Customer",
    ...                      event_type="CustomerRegistered", payload={"name": "Ada"})],
    ...            expected={"customer-7": NO_STREAM})

One `append` is one atomic commit (DESIGN.md, "The commit"): under an exclusive lock the writer
checks every expected version, assigns gap-free positions, versions and chained hashes, writes
one segment to a temp file with page checksums, fsyncs it, publishes it with a put-if-absent link,
fsyncs the folder and only then records it in HEAD. Readers list the folder and read the widest
gap-free cover of segments (see `segments.py`), so a reader never sees half a commit. The log knows
nothing of customers or orders: payloads are JSON objects to it.
"""

from __future__ import annotations

import bisect
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, overload

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from cqrs_lab import display, stamping
from cqrs_lab import segments as fmt
from cqrs_lab.compaction import CompactionReport, compact
from cqrs_lab.determinism import Clock, IdGenerator, random_ids, system_clock
from cqrs_lab.errors import (
    CorruptLogError,
    DuplicateEventError,
    InvalidEventError,
    LogNotFoundError,
)
from cqrs_lab.locking import FileLock
from cqrs_lab.verify import VerifyReport, verify_log
from cqrs_lab.writer import WriterState

NO_STREAM = 0  # expected version meaning "this stream must not exist yet"
ANY_VERSION = None  # expected version meaning "append whatever the stream's version"
_PUBLISH_ATTEMPTS = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class NewEvent:
    """An event to append; the log assigns its position, version, time, hash (and id if None)."""

    stream_id: str
    stream_type: str
    event_type: str
    payload: Mapping[str, Any] | str
    event_id: str | None = None
    command_id: str = ""
    correlation_id: str = ""
    causation_id: str = ""
    actor: str = ""
    schema_version: int = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedEvent:
    """An event as stored: one row of the log (`hash` as hex for reading)."""

    position: int
    stream_id: str
    stream_type: str
    version: int
    event_type: str
    schema_version: int
    payload: str
    recorded_at: datetime
    event_id: str
    command_id: str
    correlation_id: str
    causation_id: str
    actor: str
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        """The payload as a dict."""
        return json.loads(self.payload)  # type: ignore[no-any-return]

    def _repr_html_(self) -> str:
        return display.events_table([self])


def records(table: pa.Table) -> list[RecordedEvent]:
    """Rows of a log table as RecordedEvents.

    Built column by column, and each distinct time is made a datetime once (a commit's rows
    share one): making a datetime per row was 3.5 us, 43 % of the whole; 2.43 -> 1.65 ms for a
    330-row delivery of the demo.
    """
    times_name = "recorded_at"
    times = table[times_name]
    columns = {name: table[name].to_pylist() for name in table.column_names if name != times_name}
    distinct = pc.unique(times)
    made = dict(zip(distinct.cast(pa.int64()).to_pylist(), distinct.to_pylist(), strict=True))
    columns[times_name] = [made[t] for t in times.cast(pa.int64()).to_pylist()]
    columns["hash"] = [value.hex() for value in columns["hash"]]
    names, values = list(columns), columns.values()
    return [
        RecordedEvent(**dict(zip(names, row, strict=True))) for row in zip(*values, strict=True)
    ]


class Commit(Sequence[RecordedEvent]):
    """What one append recorded: the rows as an Arrow table, and as RecordedEvents on demand."""

    def __init__(self, table: pa.Table | stamping.Stamped) -> None:
        self._rows = table  # a Stamped builds its table on first use: appends rarely need it
        self._events: list[RecordedEvent] | None = None

    @property
    def table(self) -> pa.Table:
        """The recorded rows as an Arrow table."""
        return self._rows.table if isinstance(self._rows, stamping.Stamped) else self._rows

    @property
    def events(self) -> list[RecordedEvent]:
        """The recorded rows as Python records."""
        if self._events is None:
            self._events = records(self.table)
        return self._events

    @overload
    def __getitem__(self, index: int) -> RecordedEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RecordedEvent]: ...
    def __getitem__(self, index: int | slice) -> RecordedEvent | Sequence[RecordedEvent]:
        return self.events[index]

    def __len__(self) -> int:
        if isinstance(self._rows, stamping.Stamped):
            return self._rows.rows
        return int(self._rows.num_rows)

    def __iter__(self) -> Iterator[RecordedEvent]:
        return iter(self.events)

    def __repr__(self) -> str:
        if not len(self):
            return "Commit(0 events)"
        first, last = self.table["position"][0].as_py(), self.table["position"][-1].as_py()
        return f"Commit({len(self)} events, positions {first}..{last})"

    def _repr_html_(self) -> str:
        return f"<div><b>{escape(repr(self))}</b>{display.events_table(self.events)}</div>"


class EventLog:
    """One service's append-only event log in a folder of Parquet segments."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None,
        ids: IdGenerator | None,
        lock_timeout: float = 30.0,
    ) -> None:
        self.path = path
        self.events_dir = path / fmt.EVENTS_DIR
        self.head_path = path / fmt.HEAD_FILE
        self.clock: Clock = clock or system_clock
        self.ids: IdGenerator = ids or random_ids
        self._lock = FileLock(path / fmt.LOCK_FILE, timeout=lock_timeout)
        self._writer: WriterState | None = None
        self._ledger = fmt.LedgerView(path)  # what readers read: the segments HEAD records

    @classmethod
    def create(
        cls, path: str | Path, *, clock: Clock | None = None, ids: IdGenerator | None = None
    ) -> EventLog:
        """Create an empty log in a new or empty folder and open it."""
        path = Path(path)
        if (path / fmt.HEAD_FILE).exists():
            raise InvalidEventError(f"{path} already holds an event log; open it instead")
        (path / fmt.EVENTS_DIR).mkdir(parents=True, exist_ok=True)
        (path / fmt.HEAD_FILE).touch()
        return cls.open(path, clock=clock, ids=ids)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        lock_timeout: float = 30.0,
    ) -> EventLog:
        """Open an existing log; warns about leftover or foreign files (naming them).

        `lock_timeout`: how long an append waits for another process's commit before it gives
        up with StoreLockedError.
        """
        path = Path(path)
        if not (path / fmt.HEAD_FILE).is_file() or not (path / fmt.EVENTS_DIR).is_dir():
            raise LogNotFoundError(f"no event log at {path} (expected {fmt.HEAD_FILE} and events/)")
        log = cls(path, clock=clock, ids=ids, lock_timeout=lock_timeout)
        log._warn_about_strays()
        return log

    def close(self) -> None:
        """Release the log's files."""
        self._lock.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventLog({str(self.path)!r}, position={self.position})"

    # --- writing ---------------------------------------------------------------------------------

    def append(self, events: Sequence[NewEvent], *, expected: Mapping[str, int | None]) -> Commit:
        """Append events atomically; `expected` maps each stream to its version (or NO_STREAM/ANY).

        Raises ConcurrencyError (nothing written) if a stream is not at its expected version, and
        DuplicateEventError if an event_id is already in the log or twice in the batch.
        """
        batch = stamping.check(events, expected, self.ids)
        with self._lock:
            state = self._writer_state()
            # see writer.py's docstring (a state not loaded yet recovers as it loads)
            if state.loaded and (self._lock.others_held or state.interrupted):
                state.recover()
            for _ in range(_PUBLISH_ATTEMPTS):
                state.refresh()
                stamping.check_expected(state.versions, expected)
                # ids made here are 128 random bits (as a uuid4): only given ids can be taken
                if not batch.ids_made:
                    taken = state.event_ids.first_known(batch.columns["event_id"])
                    if taken is not None:
                        raise DuplicateEventError(taken)
                stamped = stamping.stamp(batch, state.head(self.clock()))
                try:
                    state.commit(stamped)
                except FileExistsError:  # a killed writer left a published, unrecorded segment
                    state.recover()
                    continue
                if state.recorded is not None:
                    self._ledger.take_in(*state.recorded)
                return Commit(stamped)
        raise CorruptLogError(f"{self.events_dir}: could not publish after recovery; run verify")

    def _writer_state(self) -> WriterState:
        if self._writer is None:
            self._writer = WriterState(self.path)
        return self._writer

    # --- reading ---------------------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The last position readers can see (0 for an empty log)."""
        chosen = self._cover()
        return chosen[-1].last if chosen else 0

    def committed_position(self) -> int:
        """The highest position recorded in HEAD: cheap (a stat; HEAD's end is read if it grew)."""
        self._ledger.refresh()
        return self._ledger.head

    def _cover(self) -> list[fmt.Segment]:
        """The segments readers read: HEAD's cover (never a folder listing)."""
        self._ledger.refresh()
        return self._ledger.chosen

    def files(self, *, after: int | None = None, upto: int | None = None) -> list[Path]:
        """The segment files to scan, in position order (for DuckDB's `read_parquet([...])`)."""
        return [Path(path) for path in self.file_paths(after=after, upto=upto)]

    def file_paths(self, *, after: int | None = None, upto: int | None = None) -> list[str]:
        """`files()` as strings, found by binary search: cheap with thousands of segments."""
        chosen, lasts = self._cover(), self._ledger.lasts
        start = bisect.bisect_right(lasts, after) if after is not None else 0
        stop = len(chosen)
        if upto is not None:
            stop = bisect.bisect_right(lasts, upto)
            stop += stop < len(chosen) and chosen[stop].first <= upto
        return self._ledger.paths[start:stop]

    def scan(
        self,
        *,
        stream_id: str | None = None,
        after: int | None = None,
        upto: int | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Events as an Arrow table, in position order, filtered by the keyword arguments.

        `after`/`upto` are positions (exclusive/inclusive), `until` a time (inclusive).
        """
        wanted = list(columns) if columns is not None else list(fmt.COLUMNS)
        needed = list(dict.fromkeys([*wanted, "position", "stream_id", "recorded_at"]))
        parts = self._read_range(after or 0, upto, needed)
        table = pa.concat_tables(parts) if parts else fmt.SCHEMA.empty_table().select(needed)
        mask = _filter_mask(table, stream_id=stream_id, after=after, upto=upto, until=until)
        if mask is not None:
            table = table.filter(mask)
        return table.select(wanted)

    def _read_range(self, done: int, upto: int | None, columns: list[str]) -> list[pa.Table]:
        """Segments after position `done`, in order. A compaction may delete a file we were about
        to read: then HEAD names the wide file that replaced it, and we go on from where we got."""
        parts: list[pa.Table] = []
        end = self._cover()[-1].last if self._cover() else 0
        end = min(end, upto) if upto is not None else end
        misses = 0
        while done < end:
            chosen = self._cover()
            at = bisect.bisect_right(self._ledger.lasts, done)
            if at == len(chosen):
                break
            try:
                table = _read_file(Path(self._ledger.paths[at]), columns)
            except FileNotFoundError:
                misses += 1
                if misses > 100:  # not a compaction: a recorded segment is gone
                    missing = self._ledger.paths[at]
                    raise CorruptLogError(f"{missing}: recorded in HEAD but missing") from None
                continue
            if chosen[at].first <= done:
                table = table.filter(pc.greater(table["position"], done))
            parts.append(table)
            done = chosen[at].last
        return parts

    def read(
        self,
        *,
        stream_id: str | None = None,
        after: int | None = None,
        upto: int | None = None,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """Events as Python records (for small reads); same filters as `scan`."""
        return records(self.scan(stream_id=stream_id, after=after, upto=upto, until=until))

    def relation(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        after: int | None = None,
        upto: int | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the segment files (lazy: build it again after a compaction)."""
        files = self.file_paths(after=after, upto=upto)
        if not files:
            return con.from_arrow(fmt.SCHEMA.empty_table())
        return con.sql(
            """
            SELECT *
            FROM read_parquet($files)
            WHERE position > $after
              AND position <= $upto
            """,
            params={"files": files, "after": after or 0, "upto": upto or 2**62},
        )

    def stream_version(self, stream_id: str) -> int:
        """The current version of a stream (0 if it does not exist)."""
        table = self.scan(stream_id=stream_id, columns=["version"])
        return int(table["version"][-1].as_py()) if table.num_rows else 0

    # --- integrity and maintenance ---------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check every segment, row, hash and the HEAD anchor; returns a VerifyReport."""
        return verify_log(self.path)

    def compact(
        self,
        *,
        target_rows: int = 1_000_000,
        keep_replaced_for: float = fmt.KEEP_REPLACED_SECONDS,
    ) -> CompactionReport:
        """Merge runs of small segments into ones of up to `target_rows` rows, under the lock.

        Replaced segments are deleted once replaced for `keep_replaced_for` seconds (0: now).
        """
        with self._lock:
            self._writer_state().recover()
            return compact(self, target_rows=target_rows, keep_replaced_for=keep_replaced_for)

    def recover(self) -> list[str]:
        """Tidy up after a killed writer (under the lock); returns what was done."""
        with self._lock:
            return self._writer_state().recover()

    def _warn_about_strays(self) -> None:
        segments, temps, unknown = fmt.list_folder(self.events_dir)
        recorded = {entry.segment.name for entry in self._ledger_entries()}
        for name in temps:
            warnings.warn(
                f"{self.events_dir / name}: leftover of an interrupted commit; never read, "
                "and the next append removes it",
                stacklevel=3,
            )
        for name in unknown:
            warnings.warn(
                f"{self.events_dir / name}: not a segment of this log; ignored", stacklevel=3
            )
        for seg in segments:
            if seg.name not in recorded:
                warnings.warn(
                    f"{self.events_dir / seg.name}: not recorded in HEAD (a commit whose writer "
                    "stopped before recording it, or a foreign file); not read until the next "
                    "writer records it (if whole and continuing the log) or removes it",
                    stacklevel=3,
                )

    def _ledger_entries(self) -> list[fmt.LedgerEntry]:
        self._ledger.refresh()
        return self._ledger.entries


def _read_file(path: Path, columns: Sequence[str]) -> pa.Table:
    try:
        return fmt.decode_segment(path.read_bytes(), columns=columns)
    except (pa.ArrowInvalid, OSError, ValueError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CorruptLogError(f"{path}: unreadable segment (torn or tampered): {error}") from None


def _filter_mask(
    table: pa.Table,
    *,
    stream_id: str | None,
    after: int | None,
    upto: int | None,
    until: datetime | None,
) -> pa.ChunkedArray | None:
    conditions = []
    if stream_id is not None:
        conditions.append(pc.equal(table["stream_id"], stream_id))
    if after is not None:
        conditions.append(pc.greater(table["position"], after))
    if upto is not None:
        conditions.append(pc.less_equal(table["position"], upto))
    if until is not None:
        conditions.append(
            pc.less_equal(table["recorded_at"], pa.scalar(until, table["recorded_at"].type))
        )
    mask = None
    for condition in conditions:
        mask = condition if mask is None else pc.and_(mask, condition)
    return mask
