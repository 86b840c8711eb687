"""Compaction: merge runs of small segments into large ones, keeping every row exactly.

Many one-commit files make every scan pay per-file costs; a few wide files with large row groups
scan at DuckDB's full speed. The steps are ordered so a crash anywhere leaves a readable log:
write the wide segment (temp, fsync, link), record it in HEAD, then flush HEAD and delete the
narrow ones (after a grace period: `KEEP_REPLACED_SECONDS`, like Delta Lake's vacuum retention).
Readers take the widest cover of what HEAD records, so they switch to the wide segment as soon
as its line is there; a reader that was about to open a narrow one just deleted goes on from the
wide one (`EventLog.scan`). A writer's recovery removes narrow files a recorded wide one replaced,
and rolls back a wide file a killed compaction published but never recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from cqrs_lab import progress
from cqrs_lab import segments as fmt
from cqrs_lab.errors import CorruptLogError

if TYPE_CHECKING:
    from cqrs_lab.eventlog import EventLog


@dataclass(slots=True)
class CompactionReport:
    """What a compaction did: segments before and after, and the wide segments it wrote."""

    segments_before: int
    segments_after: int
    written: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.segments_before} segments -> {self.segments_after} "
            f"({len(self.written)} written)"
        )


def plan(chosen: list[fmt.Segment], target_rows: int) -> list[list[fmt.Segment]]:
    """Runs of consecutive segments whose rows add up to at most target_rows, two or more each."""
    runs: list[list[fmt.Segment]] = [[]]
    rows = 0
    for seg in chosen:
        size = seg.last - seg.first + 1
        if runs[-1] and rows + size > target_rows:
            runs.append([])
            rows = 0
        runs[-1].append(seg)
        rows += size
    return [run for run in runs if len(run) > 1]


def compact(log: EventLog, *, target_rows: int, keep_replaced_for: float) -> CompactionReport:
    """Merge small segments of `log`; the caller holds the log's lock.

    The segments a merge replaces are deleted by a later compaction or recovery, once they have
    been replaced for `keep_replaced_for` seconds (0: at once), so that a query handed the old
    file list just before still finds its files.
    """
    state = log._writer_state()
    state.refresh()
    entries = fmt.parse_ledger(log.head_path.read_bytes())[0]
    chosen = fmt.recorded_cover(entries)
    report = CompactionReport(len(chosen), len(chosen))
    recorded = {e.segment.name: e for e in entries}
    runs = plan(chosen, target_rows)
    with progress.bar(sum(_rows(run) for run in runs), desc=f"compact {log.path.name}") as shown:
        for run in runs:
            table = pa.concat_tables([_read_checked(log, seg, recorded) for seg in run])
            name = state.publish(table, compacted=True)
            report.written.append(name)
            report.segments_after -= len(run) - 1
            shown.update(_rows(run))
    state.remove_replaced(older_than=keep_replaced_for)
    return report


def _rows(run: list[fmt.Segment]) -> int:
    return sum(seg.last - seg.first + 1 for seg in run)


def _read_checked(
    log: EventLog, seg: fmt.Segment, recorded: dict[str, fmt.LedgerEntry]
) -> pa.Table:
    """A segment's rows, refusing any whose bytes differ from what HEAD recorded."""
    data = (log.events_dir / seg.name).read_bytes()
    entry = recorded.get(seg.name)
    if entry is None or entry.file_digest != fmt.file_digest(data):
        raise CorruptLogError(
            f"{log.events_dir / seg.name}: bytes differ from HEAD's record; "
            "compaction refuses to copy damage (run `cqrs-lab log verify`)"
        )
    return fmt.decode_segment(data)
