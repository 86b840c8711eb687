"""Compaction: merge runs of small segments into large ones, keeping every row exactly.

Many one-commit files make every scan pay per-file costs; a few wide files with large row groups
scan at DuckDB's full speed. The steps are ordered so a crash anywhere leaves a readable log:
write the wide segment (temp, fsync, link), record it in HEAD, then delete the narrow ones. A
reader that lists the folder in between sees both and takes the wide one (the widest cover);
a writer's recovery removes narrow files that a recorded wide one supersedes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

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


def compact(log: EventLog, *, target_rows: int) -> CompactionReport:
    """Merge small segments of `log`; the caller holds the log's lock."""
    state = log._writer_state()
    state.refresh()
    chosen, _ = fmt.cover(fmt.list_folder(log.events_dir)[0])
    report = CompactionReport(len(chosen), len(chosen))
    recorded = {e.segment.name: e for e in fmt.parse_ledger(log.head_path.read_bytes())[0]}
    for run in plan(chosen, target_rows):
        table = pa.concat_tables([_read_checked(log, seg, recorded) for seg in run])
        name = state.publish(table, row_group_size=fmt.COMPACT_ROW_GROUP)
        state.remove([seg.name for seg in run])
        report.written.append(name)
        report.segments_after -= len(run) - 1
    return report


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
