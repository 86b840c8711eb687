"""Shared by the fault tests and their child processes: marked commits, acks, and the checks.

Every commit a fault test makes is *marked*: its events share one `command_id` and each payload
says how many events the commit holds (`{"of": k, "i": i}`), so any reader can tell a whole commit
from part of one. A writer acknowledges a commit with one write() of one JSON line (`ack_line`),
to a pipe or an acks file, once `append` has returned; the test collects those lines into
`acked` (event_id -> Placed), the exact set of events the log promised to keep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import duckdb
import pyarrow as pa

from cqrs_lab.eventlog import NO_STREAM, Commit, EventLog, NewEvent

HERE = Path(__file__).parent
HOT_STREAMS = tuple(f"hot-{i}" for i in range(4))
READ_COLUMNS = ["position", "stream_id", "version", "event_id", "command_id", "payload"]
# The only warnings opening a crashed log may give: a killed commit's temp file (never read), or
# its published segment that HEAD does not record yet (read once the next writer records it).
HARMLESS_WARNINGS = (
    "leftover of an interrupted commit",
    "not recorded in HEAD (a commit whose writer stopped",
)


class Placed(NamedTuple):
    """Where the log put an acknowledged event."""

    position: int
    stream_id: str
    version: int
    command_id: str


def marked_events(command_id: str, streams: Iterable[str]) -> list[NewEvent]:
    """One commit's events, one per stream listed (a stream may repeat), all marked."""
    streams = list(streams)
    return [
        NewEvent(
            stream_id=stream,
            stream_type="Probe",
            event_type="Probed",
            payload={"of": len(streams), "i": i},
            event_id=f"{command_id}-e{i}",
            command_id=command_id,
        )
        for i, stream in enumerate(streams)
    ]


def placed(commit: Commit) -> dict[str, Placed]:
    """Where a commit's events landed."""
    return {e.event_id: Placed(e.position, e.stream_id, e.version, e.command_id) for e in commit}


def ack_line(commit: Commit) -> bytes:
    """One JSON line acknowledging a commit; well below PIPE_BUF, so one write is atomic."""
    rows = [[e.event_id, e.position, e.stream_id, e.version, e.command_id] for e in commit]
    line = (json.dumps({"ack": rows}) + "\n").encode()
    assert len(line) < 4096, "an ack line must fit one atomic pipe write"
    return line


def parse_acks(output: str) -> tuple[dict[str, Placed], list[dict[str, object]]]:
    """The acknowledged events in a child's stdout, and its other JSON lines.

    A line cut short cannot happen (one write each); if it did, it would count as unacknowledged.
    """
    acked: dict[str, Placed] = {}
    others = []
    for line in output.splitlines():
        if not line.startswith("{") or not line.endswith("}"):
            continue
        record = json.loads(line)
        if "ack" not in record:
            others.append(record)
            continue
        for event_id, position, stream_id, version, command_id in record["ack"]:
            acked[event_id] = Placed(position, stream_id, version, command_id)
    return acked, others


def check_table(table: pa.Table, acked: Mapping[str, Placed] | None = None) -> None:
    """Assert a scan is a whole log: positions 1..n, versions gap-free, commits whole, acks kept."""
    columns = table.select(READ_COLUMNS).to_pydict()
    positions = columns["position"]
    assert positions == list(range(1, len(positions) + 1)), "positions are not exactly 1..n"
    ids = columns["event_id"]
    assert len(set(ids)) == len(ids), "an event_id is visible twice"
    versions: dict[str, int] = defaultdict(int)
    commits: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for position, stream, version, command, payload in zip(
        positions,
        columns["stream_id"],
        columns["version"],
        columns["command_id"],
        columns["payload"],
        strict=True,
    ):
        versions[stream] += 1
        assert version == versions[stream], f"{stream} has version {version} at {position}"
        data = json.loads(payload)
        commits[command].append((position, data["i"], data["of"]))
    for command, rows in commits.items():
        size = rows[0][2]
        assert len(rows) == size, f"commit {command} is partly visible: {len(rows)} of {size}"
        assert [r[0] - rows[0][0] for r in rows] == list(range(size)), f"{command} is split"
        assert [r[1] for r in rows] == list(range(size)), f"{command}'s events are reordered"
    places = zip(positions, columns["stream_id"], columns["version"], strict=True)
    where = dict(zip(ids, places, strict=True))
    for event_id, place in (acked or {}).items():
        assert event_id in where, f"acknowledged event {event_id} ({place}) is gone"
        assert where[event_id] == place[:3], f"{event_id} moved from {place} to {where[event_id]}"


def open_after_crash(path: Path) -> EventLog:
    """Open a log (a new instance); only warnings about a killed commit's leftovers are allowed:
    its temp file, or its segment published but not recorded in HEAD (the next writer records
    it again if it is whole, or rolls it back)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = EventLog.open(path)
    unexpected = [
        str(w.message)
        for w in caught
        if not any(harmless in str(w.message) for harmless in HARMLESS_WARNINGS)
    ]
    assert not unexpected, unexpected
    return log


def check_with_duckdb(log: EventLog, *, at_least: int, exactly: int | None = None) -> int:
    """DuckDB, handed the log's file list, sees a whole log of `at_least` events; returns n."""
    with duckdb.connect() as con:
        relation = log.relation(con)
        aggregate = relation.aggregate("count(*), count(DISTINCT event_id), max(position)")
        [(rows, distinct, last)] = aggregate.fetchall()
    assert rows == distinct == (last or 0), f"DuckDB saw {rows} rows, {distinct} ids, last {last}"
    assert rows >= at_least, f"DuckDB saw {rows} events, fewer than the {at_least} seen before"
    assert exactly is None or rows == exactly, f"DuckDB saw {rows} events, not {exactly}"
    return int(rows)


def current_versions(table: pa.Table) -> dict[str, int]:
    """Each stream's last version in a scan."""
    return dict(zip(table["stream_id"].to_pylist(), table["version"].to_pylist(), strict=True))


def check_and_continue(path: Path, acked: dict[str, Placed], command_id: str) -> pa.Table:
    """After a crash: check the log whole, then append one commit with a new log instance.

    The new instance first recovers, as its first append would: a commit published but not yet
    recorded in HEAD is recorded (it is whole) and then read like any other. The commit goes to a
    hot stream at its exact version and to a new stream, and must land at the next positions; it
    is added to `acked`. Returns the scan taken after it.
    """
    log = open_after_crash(path)
    try:
        log.recover()
        table = log.scan()
        check_table(table, acked)
        check_with_duckdb(log, at_least=0, exactly=table.num_rows)
        report = log.verify()
        assert report.ok, str(report)
        versions = current_versions(table)
        hot, new = HOT_STREAMS[len(acked) % len(HOT_STREAMS)], f"{command_id}-own"
        expected = {hot: versions.get(hot, NO_STREAM), new: NO_STREAM}
        commit = log.append(marked_events(command_id, [hot, new]), expected=expected)
        n = table.num_rows
        got = [(e.position, e.stream_id, e.version) for e in commit]
        assert got == [(n + 1, hot, expected[hot] + 1), (n + 2, new, 1)], got
        acked.update(placed(commit))
        after = log.scan()
        check_table(after, acked)
        return after
    finally:
        log.close()


def spawn(script: str, *args: object, stderr: Path) -> subprocess.Popen[str]:
    """Start one of this folder's helper scripts with this interpreter (see `wait_ready`)."""
    with stderr.open("a") as err:
        child = subprocess.Popen(
            [sys.executable, str(HERE / script), *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    return child


def wait_ready(child: subprocess.Popen[str], stderr: Path) -> None:
    """Block until a spawned helper has imported everything and said "ready"."""
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line == "ready\n", f"helper did not start ({line!r}):\n{stderr.read_text()}"


def go(child: subprocess.Popen[str], message: str = "go") -> None:
    """Release a ready helper by sending it one line."""
    assert child.stdin is not None
    child.stdin.write(message + "\n")
    child.stdin.flush()
