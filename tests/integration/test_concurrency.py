"""Concurrency tests: real processes racing on one log (concurrent_writer.py, log_reader.py).

Writers, a compactor and a reader start together (each says "ready", then all get "go"). Every
acknowledged commit must be in the log exactly once, where it was acknowledged; the log must have
no duplicate or missing position or version; the only error a writer may meet is ConcurrencyError
(and with shared hot streams it must meet some, and retry); a reader scanning meanwhile must
always see a gap-free prefix made of whole commits, and never fail.

The last tests pin, deterministically, the ways a reader was seen to fail next to compactions in
the random runs: a DuckDB query handed a file that a compaction then deleted, DuckDB queries after
another process compacted, and a scan that outlasts several compaction runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from log_reader import ids_digest
from logcheck import Placed, check_table, go, marked_events, parse_acks, spawn, wait_ready

from cqrs_lab import segments as fmt
from cqrs_lab.eventlog import ANY_VERSION, EventLog

WORKERS, COMMITS = 4, 25


class Processes:
    """Helper processes started by a test; any still running at the end are killed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(self, script: str, *args: object) -> tuple[subprocess.Popen[str], Path]:
        stderr = self.folder / f"{script}-{len(self.started)}.stderr"
        self.started.append((spawn(script, *args, stderr=stderr), stderr))
        return self.started[-1]

    def all_ready(self) -> None:
        for process, stderr in self.started:
            wait_ready(process, stderr)

    def finish(self, process: subprocess.Popen[str], stderr: Path) -> str:
        """Wait for a process to end by itself: its stdout (it must have succeeded)."""
        output, status = self.wait(process)
        assert status == 0, f"{process.args} failed:\n{stderr.read_text()}"
        return output

    def wait(self, process: subprocess.Popen[str]) -> tuple[str, int]:
        """Wait for a process to end by itself: its stdout and exit status."""
        output, _ = process.communicate()
        return output, process.returncode

    def close(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.communicate()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.close()


def check_reader(ended: tuple[str, int], stderr: Path, path: Path) -> dict[str, object]:
    """A reader never failed, scanned, and what it saw last is a prefix of the final log."""
    output, status = ended
    assert status == 0, f"a reader failed:\n{stderr.read_text()}"
    summary = json.loads(output)
    with EventLog.open(path) as log:
        ids = log.scan(columns=["event_id"])["event_id"].to_pylist()
    assert summary["scans"] > 0
    assert ids_digest(ids[: summary["events"]]) == summary["ids"]
    return summary


@pytest.mark.slow
def test_racing_writers_lose_nothing_duplicate_nothing_and_surface_conflicts(
    tmp_path: Path, processes: Processes
) -> None:
    path = tmp_path / "log"
    EventLog.create(path).close()
    stop = tmp_path / "stop"
    writers = [
        processes.start("concurrent_writer.py", path, f"w{i}", i, COMMITS, "mixed")
        for i in range(WORKERS)
    ]
    compactor = processes.start("concurrent_writer.py", path, "compactor", 99, stop, "compactor")
    reader = processes.start("log_reader.py", path, stop)
    processes.all_ready()
    for process, _ in processes.started:
        go(process)
    acked: dict[str, Placed] = {}
    conflicts = 0
    for process, stderr in writers:
        new, [totals] = parse_acks(processes.finish(process, stderr))
        assert len({p.command_id for p in new.values()}) == COMMITS
        assert not acked.keys() & new.keys(), "two workers were acknowledged the same event"
        acked.update(new)
        conflicts += int(totals["conflicts"])
    stop.touch()
    _, [compactions] = parse_acks(processes.finish(*compactor))
    reader_ended = processes.wait(reader[0])

    with EventLog.open(path) as log:
        table = log.scan()
        report = log.verify()
    check_table(table, acked)  # positions 1..n, versions gap-free, whole commits, acks in place
    assert sorted(table["event_id"].to_pylist()) == sorted(acked), "unacknowledged events"
    versions = Counter(
        zip(table["stream_id"].to_pylist(), table["version"].to_pylist(), strict=True)
    )
    assert max(versions.values()) == 1, "a stream has a version twice"
    assert report.ok, str(report)
    print(f"{conflicts} conflicts, {compactions['compactions']} compactions")
    assert conflicts > 0, "writers sharing hot streams never conflicted"
    summary = check_reader(reader_ended, reader[1], path)  # last: see the two reader tests below
    print(f"reader: {summary}")
    assert summary["duckdb_failures"] == 0, summary["duckdb_error"]


@pytest.mark.slow
def test_two_processes_appending_with_any_version_get_distinct_consecutive_versions(
    tmp_path: Path, processes: Processes
) -> None:
    path = tmp_path / "log"
    EventLog.create(path).close()
    workers = [
        processes.start("concurrent_writer.py", path, f"a{i}", i, 30, "any") for i in range(2)
    ]
    processes.all_ready()
    for process, _ in workers:
        go(process)
    acked: dict[str, Placed] = {}
    for process, stderr in workers:
        new, _ = parse_acks(processes.finish(process, stderr))
        mine = [place.version for place in sorted(new.values())]
        assert mine == sorted(set(mine)), "one process got a version twice or out of order"
        acked.update(new)
    versions = sorted(place.version for place in acked.values())
    assert versions == list(range(1, len(acked) + 1))
    with EventLog.open(path) as log:
        table = log.scan()
        assert log.verify().ok
    check_table(table, acked)
    assert table["version"].to_pylist() == versions


def six_single_event_segments(path: Path) -> None:
    with EventLog.create(path) as writer:
        for n in range(6):
            writer.append(marked_events(f"c{n}", ["s"]), expected={"s": ANY_VERSION})


def duckdb_count(log: EventLog, con: object) -> int:
    [(count,)] = log.relation(con).aggregate("count(*)").fetchall()  # type: ignore[arg-type]
    return int(count)


class CompactingFirst:
    """A DuckDB connection that lets another instance compact just before each query is bound,
    i.e. after `relation()` listed the files: the race a background compactor wins sometimes."""

    def __init__(self, con: duckdb.DuckDBPyConnection, compactor: EventLog) -> None:
        self.con, self.compactor = con, compactor

    def sql(self, *args: object, **kwargs: object) -> duckdb.DuckDBPyRelation:
        self.compactor.compact()
        return self.con.sql(*args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.con, name)


def test_a_duckdb_read_racing_a_compaction_does_not_fail(tmp_path: Path) -> None:
    """A compaction that deletes the narrow segments just after a reader listed them must not
    make the reader's DuckDB query fail, just as `scan` retries."""
    path = tmp_path / "log"
    six_single_event_segments(path)
    with (
        EventLog.open(path) as reader,
        EventLog.open(path) as compactor,
        duckdb.connect() as con,
    ):
        assert duckdb_count(reader, CompactingFirst(con, compactor)) == 6


def test_duckdb_reads_keep_working_after_another_process_compacted(tmp_path: Path) -> None:
    """A lab open in a notebook while `cqrs-lab log compact` runs elsewhere: the reader's next
    DuckDB queries must see the compacted files, not fail on the deleted ones."""
    path = tmp_path / "log"
    six_single_event_segments(path)
    with EventLog.open(path) as reader, duckdb.connect() as con:
        assert duckdb_count(reader, con) == 6
        with EventLog.open(path) as compactor:  # another process, as far as `reader` can tell
            compactor.compact()
        assert duckdb_count(reader, con) == 6


def test_a_scan_outlasting_several_compactions_still_reads_the_whole_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow reader of a log that a compactor keeps merging must still get the whole log.

    Deterministic: each time the reader has decoded one file of its listing, another instance
    compacts with a doubled target (2, 4, 8, ...), deleting files the reader listed, as a
    background compactor would while a large scan is under way.
    """
    path = tmp_path / "log"
    with EventLog.create(path) as writer:
        for n in range(32):
            writer.append(marked_events(f"c{n}", ["s"]), expected={"s": ANY_VERSION})
    decode, targets, busy = fmt.decode_segment, iter([2, 4, 8, 16, 32]), [False]
    with EventLog.open(path) as reader, EventLog.open(path) as compactor:

        def decode_then_compact(data: bytes, **options: object) -> object:
            table = decode(data, **options)
            if not busy[0]:
                busy[0] = True  # the compaction decodes too
                compactor.compact(target_rows=next(targets, 64))
                busy[0] = False
            return table

        monkeypatch.setattr(fmt, "decode_segment", decode_then_compact)
        table = reader.scan()
    check_table(table)
    assert table.num_rows == 32
