"""`verify()`: check a log's files, rows, hash chain and HEAD ledger, and say what is wrong where.

A *finding* is damage (a changed byte, a missing tail, a gap, a foreign file): verify fails.
A *notice* is a harmless leftover of an interrupted commit or compaction that the next writer
tidies up by itself: reported, never fatal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from cqrs_lab import segments as fmt


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing verify found: what, in which file, at which position (if known)."""

    file: str
    message: str
    position: int | None = None

    def __str__(self) -> str:
        where = f" at position {self.position}" if self.position is not None else ""
        return f"{self.file}{where}: {self.message}"


@dataclass(slots=True)
class VerifyReport:
    """Everything verify checked and found; `ok` when there are no findings."""

    path: Path
    events: int = 0
    segments: int = 0
    findings: list[Finding] = field(default_factory=list)
    notices: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the log is intact (notices allowed)."""
        return not self.findings

    def __str__(self) -> str:
        verdict = "OK" if self.ok else f"{len(self.findings)} problem(s)"
        lines = [f"{self.path}: {verdict} ({self.events} events in {self.segments} segments)"]
        lines += [f"  PROBLEM {finding}" for finding in self.findings]
        lines += [f"  note    {notice}" for notice in self.notices]
        return "\n".join(lines)


def verify_log(path: Path) -> VerifyReport:
    """Check every file, row, version, hash and the HEAD anchor of the log at `path`."""
    report = VerifyReport(path)
    events_dir = path / fmt.EVENTS_DIR
    segments, temps, unknown = fmt.list_folder(events_dir)
    for name in temps:
        report.notices.append(Finding(name, "leftover temp file of an interrupted commit"))
    for name in unknown:
        report.findings.append(Finding(name, "unknown file in the events folder"))
    entries, bad_lines, torn = fmt.parse_ledger((path / fmt.HEAD_FILE).read_bytes())
    for line in bad_lines:
        report.findings.append(Finding(fmt.HEAD_FILE, f"malformed line {line[:80]!r}"))
    if torn:
        report.notices.append(Finding(fmt.HEAD_FILE, "torn last line of an interrupted commit"))
    chosen = fmt.recorded_cover(entries)
    _check_layout(report, segments, entries, chosen)
    _check_rows(report, events_dir, chosen, entries, {seg.name for seg in segments})
    _check_anchor(report, chosen, entries)
    return report


def _check_layout(
    report: VerifyReport,
    segments: list[fmt.Segment],
    entries: list[fmt.LedgerEntry],
    chosen: list[fmt.Segment],
) -> None:
    """Segment files HEAD does not record, or records but no longer reads."""
    recorded = {entry.segment.name for entry in entries}
    head = fmt.anchor(entries)
    next_position = (head.segment.last if head else 0) + 1
    for seg in segments:
        if seg.name not in recorded and seg.first <= next_position:
            report.notices.append(
                Finding(seg.name, "not recorded in HEAD: a commit whose writer stopped before "
                        "recording it; not read until the next writer records it (if whole and "
                        "continuing the log) or removes it")
            )  # fmt: skip
        elif seg.name not in recorded:  # no commit of ours could have started there
            missing = f"positions {next_position}..{seg.first - 1} are missing before it"
            report.findings.append(Finding(seg.name, f"not recorded in HEAD, and {missing}"))
        elif seg not in chosen:
            inside = any(c.first <= seg.first and seg.last <= c.last for c in chosen)
            message = "superseded by a compacted segment" if inside else "outside the log's cover"
            (report.notices if inside else report.findings).append(Finding(seg.name, message))
    report.segments, report.events = len(chosen), chosen[-1].last if chosen else 0


def _check_rows(
    report: VerifyReport,
    events_dir: Path,
    chosen: list[fmt.Segment],
    entries: list[fmt.LedgerEntry],
    existing: set[str],
) -> None:
    """File digests, positions, versions and the hash chain, segment by segment."""
    recorded = {entry.segment.name: entry for entry in entries}
    versions: dict[str, int] = {}
    previous = fmt.GENESIS
    gap = False  # a segment before could not be read: its streams' versions are unknown ...
    resynced: set[str] = set()  # ... until each stream shows up again
    for seg in chosen:
        entry = recorded[seg.name]
        if seg.name not in existing:
            gone = f"recorded in HEAD but gone: positions {seg.first}..{seg.last} are missing"
            report.findings.append(Finding(seg.name, gone, seg.first))
            previous, gap = bytes.fromhex(entry.last_hash), True
            continue
        data = (events_dir / seg.name).read_bytes()
        if entry.file_digest != fmt.file_digest(data):
            report.findings.append(Finding(seg.name, "bytes differ from those recorded at commit"))
        try:
            table = fmt.decode_segment(data)
        except (pa.ArrowInvalid, OSError, ValueError) as error:
            report.findings.append(Finding(seg.name, f"unreadable (torn or tampered): {error}"))
            previous, gap = bytes.fromhex(entry.last_hash), True
            continue
        resync = resynced if gap else None
        previous = _check_table(report, seg, table, versions, previous, resync=resync)
        if previous.hex() != entry.last_hash:
            report.findings.append(Finding(seg.name, "last row's hash differs from HEAD's record"))


def _check_table(
    report: VerifyReport,
    seg: fmt.Segment,
    table: pa.Table,
    versions: dict[str, int],
    previous: bytes,
    *,
    resync: set[str] | None = None,
) -> bytes:
    """Positions, per-stream versions and row hashes of one segment; returns its last hash.

    `resync`: an unreadable segment came before, so a stream not yet in this set may move
    forward by more than one at its next row (the events in between are the ones already
    reported unreadable); it joins the set then. Going back always counts.
    """
    columns = table.select(["position", "stream_id", "version", "hash"]).to_pydict()
    rows = fmt.canonical_rows(table)
    expected_position = seg.first
    for position, stream_id, version, stored, row in zip(
        columns["position"],
        columns["stream_id"],
        columns["version"],
        columns["hash"],
        rows,
        strict=True,
    ):
        if position != expected_position:
            report.findings.append(
                Finding(
                    seg.name, f"expected position {expected_position}, found {position}", position
                )
            )
        expected = versions.get(stream_id, 0) + 1
        excused = resync is not None and stream_id not in resync and version > expected
        if resync is not None:
            resync.add(stream_id)
        if version != expected and not excused:
            report.findings.append(
                Finding(seg.name, f"stream {stream_id!r} jumps to version {version}", position)
            )
        if stored != hashlib.sha256(previous + row).digest():  # each row checked on its own
            report.findings.append(
                Finding(seg.name, "row hash does not match its content or the row before", position)
            )
        versions[stream_id] = version
        expected_position = position + 1
        previous = stored
    if expected_position - 1 != seg.last:
        report.findings.append(Finding(seg.name, f"holds rows up to {expected_position - 1}"))
    return previous


def _check_anchor(
    report: VerifyReport, chosen: list[fmt.Segment], entries: list[fmt.LedgerEntry]
) -> None:
    """HEAD's highest recorded position must still be present: catches a deleted tail."""
    head = fmt.anchor(entries)
    end = chosen[-1].last if chosen else 0
    if head is not None and head.segment.last > end:
        report.findings.append(
            Finding(
                fmt.HEAD_FILE,
                f"records events up to position {head.segment.last}, but the segments end at "
                f"{end}: the tail was deleted or truncated",
            )
        )
