"""The writer's side of a log: what it knows of the head, how it publishes, how it recovers.

Every method here runs under the log's lock. The state (position, last hash, each stream's version,
the event ids already used) is loaded once and then kept current from HEAD: a writer that sees HEAD
unchanged knows no other process has committed, so a commit costs no folder listing or scan.

A commit is durable once its segment is published: the file fsynced, linked under its name, the
folder fsynced (DESIGN.md's steps 3 and 4). Its HEAD line is written next, before the append
returns, but not flushed on its own: that flush was ~0.13 ms of a ~0.8 ms command (measured
side by side in one process). A power cut can therefore lose HEAD's last lines, and a writer can
die between publishing and writing the line; either way the segment is there, whole, and
`recover` records it again (it checks the page checksums, the positions and every row hash
against HEAD's anchor). What depends on HEAD being on disk flushes it first: a compaction before
it removes the segments it replaced, and recovery after it recorded segments again.

So that such a segment never meets a second one published at the same position by another
writer, a writer recovers before it commits whenever someone else held the lock since it last
did (another process, or another EventLog instance), and after any commit of its own that did not
finish.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from cqrs_lab import segments as fmt
from cqrs_lab import tinyparquet
from cqrs_lab.errors import CorruptLogError
from cqrs_lab.eventids import EventIdIndex
from cqrs_lab.stamping import Head, Stamped

_STATE_COLUMNS = ["position", "stream_id", "version", "event_id", "recorded_at", "hash"]


class WriterState:
    """The head of the log as the writer knows it, kept current from HEAD."""

    def __init__(self, path: Path) -> None:
        self.events_dir = path / fmt.EVENTS_DIR
        self.head_path = path / fmt.HEAD_FILE
        self._dir_fd = os.open(self.events_dir, os.O_RDONLY)
        self._head_fd = os.open(self.head_path, os.O_RDWR | os.O_APPEND)
        self._unnamed = fmt.UnnamedFiles(self.events_dir)  # the next commit's file, opened ahead
        self._loaded = False
        self._ledger_size = 0
        self.position = 0
        self.last_hash = fmt.GENESIS
        self.recorded_at: datetime | None = None
        self.versions: dict[str, int] = {}
        self.event_ids = EventIdIndex(self.events_dir)
        # The last HEAD line this writer wrote: (entry, its first byte, its length).
        self.recorded: tuple[fmt.LedgerEntry, int, int] | None = None
        self.interrupted = False  # a commit of ours stopped after publishing, before HEAD

    @property
    def loaded(self) -> bool:
        """Whether the state has been loaded (the first `refresh` recovers, then loads)."""
        return self._loaded

    def head(self, now: datetime) -> Head:
        """Where the next commit continues; its time never goes back behind the last one's."""
        at = now if self.recorded_at is None else max(now, self.recorded_at)
        return Head(self.position, self.last_hash, self.versions, at)

    def close(self) -> None:
        """Flush HEAD, close the folder and HEAD handles, and the next commit's file."""
        with contextlib.suppress(OSError):
            os.fdatasync(self._head_fd)  # not needed for durability (see above), but cheap here
        self._unnamed.close()
        os.close(self._dir_fd)
        os.close(self._head_fd)

    # --- keeping current -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with commits other processes made since we last looked."""
        if not self._loaded:
            self.recover()
            self._load()
            return
        size = os.fstat(self._head_fd).st_size
        if size == self._ledger_size:
            return
        chunk = os.pread(self._head_fd, size - self._ledger_size, self._ledger_size)
        fresh, _, torn = fmt.parse_ledger(chunk)
        if torn:  # another writer died mid-line: tidy up, then read everything new
            self.recover()
            self.refresh()
            return
        try:
            for entry in fresh:
                if entry.segment.last > self.position:
                    self._absorb(self._read(entry.segment.name))
        except FileNotFoundError:  # compacted away meanwhile: read whatever covers it now
            self._absorb_cover()
        self._ledger_size = self._ledger_length()

    def _load(self) -> None:
        self._absorb_cover()
        self._ledger_size = self._ledger_length()
        entries, _, _ = fmt.parse_ledger(self._ledger_bytes())
        head = fmt.anchor(entries)
        if head is not None and (head.segment.last, head.last_hash) != (
            self.position,
            self.last_hash.hex(),
        ):
            raise CorruptLogError(
                f"{self.head_path} records position {head.segment.last} but the segments end at "
                f"{self.position} (tail missing or tampered); run `cqrs-lab log verify`"
            )
        self._loaded = True

    def _absorb_cover(self) -> None:
        for seg in fmt.recorded_cover(fmt.parse_ledger(self._ledger_bytes())[0]):
            if seg.last > self.position:
                try:
                    self._absorb(self._read(seg.name))
                except FileNotFoundError:
                    raise CorruptLogError(
                        f"{self.events_dir / seg.name} is recorded in HEAD but missing (positions "
                        f"{seg.first}..{seg.last}); run `cqrs-lab log verify`"
                    ) from None

    def _read(self, name: str) -> pa.Table:
        path = self.events_dir / name
        try:
            return fmt.decode_segment(path.read_bytes(), columns=_STATE_COLUMNS)
        except (pa.ArrowInvalid, OSError, ValueError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise CorruptLogError(
                f"{path}: unreadable segment (torn or tampered): {error}"
            ) from None

    def _absorb(self, table: pa.Table) -> None:
        """Fold rows past our position into the state."""
        if table.num_rows and table["position"][0].as_py() <= self.position:
            table = table.filter(pc.greater(table["position"], self.position))
        if table.num_rows == 0:
            return
        first = table["position"][0].as_py()
        if first != self.position + 1:
            raise CorruptLogError(
                f"{self.events_dir}: expected position {self.position + 1} next, found {first}"
            )
        if table.num_rows < 1000:  # rows are in position order, so later versions win
            self.versions.update(
                zip(table["stream_id"].to_pylist(), table["version"].to_pylist(), strict=True)
            )
        else:
            latest = table.group_by("stream_id").aggregate([("version", "max")])
            streams, versions = latest["stream_id"].to_pylist(), latest["version_max"].to_pylist()
            self.versions.update(zip(streams, versions, strict=True))
        self.event_ids.add(table["event_id"].combine_chunks())
        self.position = table["position"][-1].as_py()
        self.last_hash = table["hash"][-1].as_py()
        self.recorded_at = table["recorded_at"][-1].as_py()

    # --- publishing ------------------------------------------------------------------------------

    def publish(self, table: pa.Table, *, compacted: bool = False) -> str:
        """Write rows durably as one segment, record it in HEAD, fold it into the state.

        Returns the segment's name. Raises FileExistsError (nothing recorded) if it is taken.
        """
        first, last = table["position"][0].as_py(), table["position"][-1].as_py()
        row_group_size = fmt.COMPACT_ROW_GROUP if compacted else fmt.SMALL_ROW_GROUP
        data = fmt.encode_segment(table, row_group_size=row_group_size, compacted=compacted)
        name = self._publish(data, first, last, table["hash"][-1].as_py())
        self._absorb(table)
        return name

    def commit(self, stamped: Stamped) -> str:
        """`publish` one append's rows, folding in what the stamp already knows (no read-back)."""
        data: bytes | memoryview
        if stamped.columns is not None:
            data = tinyparquet.encode(stamped.columns)
        else:
            data = fmt.encode_segment(stamped.table)
        first, last = self.position + 1, self.position + stamped.rows
        name = self._publish(data, first, last, stamped.last_hash)
        self.versions.update(stamped.latest)
        self.event_ids.add(stamped.event_ids)
        self.position, self.last_hash, self.recorded_at = last, stamped.last_hash, stamped.at
        return name

    def _publish(self, data: bytes | memoryview, first: int, last: int, last_hash: bytes) -> str:
        name = fmt.segment_name(first, last)
        self.interrupted = True  # until HEAD has the line: KeyboardInterrupt, a full disk...
        try:
            fmt.write_durably(self._dir_fd, self.events_dir, name, data, unnamed=self._unnamed)
        except FileExistsError:  # nothing of ours was published
            self.interrupted = False
            raise
        segment = fmt.Segment(first, last, name)
        self._record(fmt.LedgerEntry(segment, fmt.file_digest(data), last_hash.hex()))
        self.interrupted = False
        return name

    def remove_replaced(self, *, older_than: float) -> list[str]:
        """Delete segments a recorded compaction replaced at least `older_than` seconds ago."""
        chosen = fmt.recorded_cover(fmt.parse_ledger(self._ledger_bytes())[0])
        firsts, names = [c.first for c in chosen], {c.name for c in chosen}
        segments, _, _ = fmt.list_folder(self.events_dir)
        now, removed = time.time(), []
        for seg in segments:
            at = bisect.bisect_right(firsts, seg.first) - 1  # the cover segment holding seg.first
            if seg.name in names or at < 0 or chosen[at].last < seg.last:
                continue
            if now - (self.events_dir / chosen[at].name).stat().st_mtime >= older_than:
                removed.append(seg.name)
        self.remove(removed)
        return [f"removed {name}, replaced by a compacted segment" for name in removed]

    def remove(self, names: list[str]) -> None:
        """Delete segments that a recorded wider segment supersedes, durably."""
        if not names:
            return
        os.fdatasync(self._head_fd)  # the wider segment's line is on disk before they go
        for name in names:
            (self.events_dir / name).unlink(missing_ok=True)
        os.fsync(self._dir_fd)

    def _record(self, entry: fmt.LedgerEntry) -> None:
        line = fmt.format_ledger_line(entry)
        os.write(self._head_fd, line)  # no flush: the segment is durable already (see above)
        end = os.lseek(self._head_fd, 0, os.SEEK_CUR)  # where the append put it, torn bytes or not
        self.recorded = (entry, end - len(line), len(line))
        self._ledger_size += len(line)

    def _ledger_bytes(self) -> bytes:
        return os.pread(self._head_fd, os.fstat(self._head_fd).st_size, 0)

    def _ledger_length(self) -> int:
        data = self._ledger_bytes()
        return data.rfind(b"\n") + 1

    # --- recovery --------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Tidy up what stopped writers left: temp files, a torn HEAD tail, unrecorded segments.

        A published segment that HEAD does not record is recorded if it is whole and continues
        the log (see the module docstring): its writer died, or a power cut took its line, after
        the commit was durable. Any other unrecorded segment (the wide file of a killed
        compaction, a damaged or foreign file) was never read and is rolled back (deleted), so
        the next commit can take its positions. Narrow segments that a recorded compaction
        replaced are deleted too. The state is not touched: `refresh` reads the lines added here.
        """
        actions: list[str] = []
        segments, temps, _ = fmt.list_folder(self.events_dir)
        for name in temps:
            (self.events_dir / name).unlink(missing_ok=True)
            actions.append(f"removed {name}, the leftover of an interrupted commit")
        data = self._ledger_bytes()
        entries, _, torn = fmt.parse_ledger(data)
        if torn:
            os.ftruncate(self._head_fd, data.rfind(b"\n") + 1)
            actions.append(f"cut a torn last line from {self.head_path.name}")
        self._ledger_size = min(self._ledger_size, self._ledger_length())  # whole lines read
        recorded = {entry.segment.name for entry in entries}
        for seg in self._record_again(segments, entries, recorded):
            recorded.add(seg.name)
            actions.append(
                f"recorded {seg.name} in HEAD: published by a writer that stopped before "
                "recording it (whole, and it continues the hash chain)"
            )
        rolled_back = False
        for seg in segments:
            if seg.name not in recorded:
                (self.events_dir / seg.name).unlink(missing_ok=True)
                actions.append(f"rolled back {seg.name}: not a whole continuation of the log")
                rolled_back = True
        if temps or rolled_back:
            os.fsync(self._dir_fd)
        actions += self.remove_replaced(older_than=fmt.KEEP_REPLACED_SECONDS)
        self.interrupted = False
        return actions

    def _record_again(
        self, segments: list[fmt.Segment], entries: list[fmt.LedgerEntry], recorded: set[str]
    ) -> list[fmt.Segment]:
        """Record in HEAD the unrecorded segments that continue it, in order (widest first where
        two start at one position: a compaction's copy of the same rows); HEAD is flushed."""
        head = fmt.anchor(entries)
        position = head.segment.last if head else 0
        last_hash = bytes.fromhex(head.last_hash) if head else fmt.GENESIS
        waiting = sorted(
            (seg for seg in segments if seg.name not in recorded and seg.first > position),
            key=lambda seg: (seg.first, -seg.last),
        )
        again = []
        for seg in waiting:
            if seg.first != position + 1:
                continue
            entry = self._continuation(seg, last_hash)
            if entry is not None:
                os.write(self._head_fd, fmt.format_ledger_line(entry))
                again.append(seg)
                position, last_hash = seg.last, bytes.fromhex(entry.last_hash)
        if again:
            os.fdatasync(self._head_fd)
        return again

    def _continuation(self, seg: fmt.Segment, previous: bytes) -> fmt.LedgerEntry | None:
        """HEAD's line for `seg` if it is whole (page checksums, the event row's columns), holds
        exactly its positions and its rows chain on from `previous`; else None."""
        try:
            data = (self.events_dir / seg.name).read_bytes()
            table = fmt.decode_segment(data)
        except (pa.ArrowInvalid, OSError, ValueError):
            return None
        if table["position"].to_pylist() != list(range(seg.first, seg.last + 1)):
            return None
        hashes = table["hash"].to_pylist()
        if hashes != list(fmt.chain(fmt.canonical_rows(table), previous)):
            return None
        return fmt.LedgerEntry(seg, fmt.file_digest(data), hashes[-1].hex())
