"""The stream index: each log's events again, sorted by stream, so one entity's history reads a
few small row groups instead of scanning the whole log.

The log is in position order, so the events of one stream are spread over every file: finding
them scans all of it (30-300 ms at 10^7 events). The index holds the columns a history shows,
sorted by `stream_id` in row groups of `ROW_GROUP` rows, whose min/max statistics let DuckDB
read only the one or two that hold the stream. Files `<lab>/read/streams/<log>/<first>-<last>
.parquet` cover positions first..last; the events after the last indexed one (at most `TAIL`)
are read from the log itself. When more have come, a history call indexes them; when there are
more than `MAX_FILES` files, all but the first are merged into one.

Like the snapshots, index files are written by the package (temporary file, then renamed into
place; a file another process wrote for the same range is the same) and each records the hash of
the event at its last position: a file made from a log that is no longer there is removed and
made again, never read.
"""

from __future__ import annotations

import bisect
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cqrs_lab import snapshots
from cqrs_lab.eventlog import EventLog
from cqrs_lab.segments import SEGMENT_NAME, segment_name

COLUMNS = (
    "position", "stream_id", "stream_type", "version", "event_type", "schema_version", "payload",
    "recorded_at", "actor",
)  # fmt: skip
TAIL = 100_000  # events a history may read from the log before they are indexed
CHUNK = 4_000_000  # events per file when indexing a long stretch at once
ROW_GROUP = 4096
MAX_FILES = 6
HASH_KEY = b"cqrs_lab.last_hash"
SELECT = ", ".join(COLUMNS)
FROM_LOG = f"""
SELECT {SELECT}
FROM read_parquet($files)
WHERE position > $after
  AND position <= $upto
ORDER BY stream_id, position
"""
FROM_INDEX = f"""
SELECT {SELECT}
FROM read_parquet($files)
ORDER BY stream_id, position
"""
IN_TAIL = f"""
SELECT {SELECT}
FROM read_parquet($tail)
WHERE position > $indexed
  AND stream_id = $stream_id
"""


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One file of the index: the events of positions first..last, sorted by stream."""

    first: int
    last: int
    path: Path


class StreamIndex:
    """One log's stream index, kept up to date by the history calls that read it."""

    def __init__(self, lab: Path, name: str, log: EventLog) -> None:
        self.folder = lab / "read" / "streams" / name
        self.log = log
        self._verified: set[Path] = set()
        self._readers: dict[Path, _Reader] = {}

    def stream(self, con: duckdb.DuckDBPyConnection, stream_id: str) -> pa.Table:
        """Every event of one stream (the index's columns), in position order."""
        files = self.refresh(con)
        parts = [_rows_of(self._reader(file), stream_id) for file in files]
        indexed = files[-1].last if files else 0
        if self.log.position > indexed:
            tail = self.log.file_paths(after=indexed)
            params = {"tail": tail, "indexed": indexed, "stream_id": stream_id}
            parts.append(con.sql(IN_TAIL, params=params).to_arrow_table())
        if not parts:
            return pa.table({column: [] for column in COLUMNS})
        return pa.concat_tables(parts).sort_by("position")

    def _reader(self, file: IndexFile) -> _Reader:
        """The file opened once, with the stream-id range of each row group."""
        reader = self._readers.get(file.path)
        if reader is None:
            reader = self._readers[file.path] = _Reader(file.path)
        return reader

    def refresh(self, con: duckdb.DuckDBPyConnection) -> list[IndexFile]:
        """The files covering the log from position 1, after indexing a long unindexed tail."""
        files = self._checked(con)
        indexed = files[-1].last if files else 0
        head = self.log.position
        if head - indexed > TAIL:
            for start in range(indexed, head, CHUNK):
                files.append(self._write(con, start, min(start + CHUNK, head)))
        if len(files) > MAX_FILES:
            files = [files[0], self._merge(con, files[1:])]
        return files

    def _cover(self) -> list[IndexFile]:
        """The widest files that chain from position 1 without a gap."""
        found = []
        for path in self.folder.glob("*.parquet"):
            match = SEGMENT_NAME.fullmatch(path.name)
            if match:
                found.append(IndexFile(int(match[1]), int(match[2]), path))
        chain, end = [], 0
        for candidate in sorted(found, key=lambda f: (f.first, -f.last)):
            if candidate.first == end + 1:
                chain.append(candidate)
                end = candidate.last
        return chain

    def _checked(self, con: duckdb.DuckDBPyConnection) -> list[IndexFile]:
        """The cover, each file checked once against the log (from a stale one on: removed)."""
        chain = self._cover()
        for at, file in enumerate(chain):
            if file.path in self._verified:
                continue
            if file.last <= self.log.position and _last_hash(file) == snapshots.hash_at(
                con, self.log, file.last
            ):
                self._verified.add(file.path)
                continue
            for stale in chain[at:]:
                stale.path.unlink(missing_ok=True)
                self._readers.pop(stale.path, None)
            return chain[:at]
        return chain

    def _write(self, con: duckdb.DuckDBPyConnection, after: int, upto: int) -> IndexFile:
        """Index the log's positions after..upto into a new file."""
        files = self.log.file_paths(after=after, upto=upto)
        query = con.sql(FROM_LOG, params={"files": files, "after": after, "upto": upto})
        return self._publish(query, after + 1, upto, snapshots.hash_at(con, self.log, upto))

    def _merge(self, con: duckdb.DuckDBPyConnection, files: list[IndexFile]) -> IndexFile:
        """One file in place of several consecutive ones."""
        query = con.sql(FROM_INDEX, params={"files": [str(f.path) for f in files]})
        merged = self._publish(query, files[0].first, files[-1].last, _last_hash(files[-1]))
        for file in files:
            file.path.unlink(missing_ok=True)
            self._readers.pop(file.path, None)
        return merged

    def _publish(
        self, query: duckdb.DuckDBPyRelation, first: int, last: int, last_hash: str
    ) -> IndexFile:
        """Write the rows of `query` as the file for first..last (temporary file, then rename)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / segment_name(first, last)
        handle, scratch = tempfile.mkstemp(prefix=".index-", suffix=".tmp", dir=self.folder)
        os.close(handle)
        try:
            reader = query.to_arrow_reader(ROW_GROUP * 16)
            schema = reader.schema.with_metadata({HASH_KEY: last_hash.encode()})
            with pq.ParquetWriter(scratch, schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch, row_group_size=ROW_GROUP)
            os.replace(scratch, target)  # the same rows if another process got here first
        finally:
            Path(scratch).unlink(missing_ok=True)
        self._verified.add(target)
        self._readers.pop(target, None)
        return IndexFile(first, last, target)


class _Reader:
    """An index file kept open, with each row group's smallest and largest stream id: the row
    groups are in stream order, so the ones that may hold a stream are found by bisection."""

    def __init__(self, path: Path) -> None:
        self.file = pq.ParquetFile(path)
        column = self.file.schema_arrow.get_field_index("stream_id")
        metadata = self.file.metadata
        stats = [
            metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)
        ]
        self.mins = [str(s.min) if s is not None and s.has_min_max else "" for s in stats]
        self.maxs = [str(s.max) if s is not None and s.has_min_max else "\uffff" for s in stats]


def _rows_of(reader: _Reader, stream_id: str) -> pa.Table:
    """The rows of one stream in an index file: only the row groups whose range holds it."""
    start = bisect.bisect_left(reader.maxs, stream_id)
    stop = bisect.bisect_right(reader.mins, stream_id)
    groups = list(range(start, max(start, stop)))
    table = reader.file.read_row_groups(groups, columns=list(COLUMNS), use_threads=False)
    return table.filter(pc.equal(table["stream_id"], stream_id))


def _last_hash(file: IndexFile) -> str:
    """The hash of the log's event at the file's last position, as recorded in the file."""
    try:
        metadata = pq.read_schema(file.path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return ""
    return bytes(metadata.get(HASH_KEY, b"")).decode()
