"""Crash tests: writers and compactions killed with SIGKILL, at random moments and at exact steps.

A child process appends marked commits and acknowledges each one (crash_writer.py, which forks
the children from one warmed-up Python so a trial does not pay seconds of imports); the test kills
it, then checks with a new EventLog instance that every acknowledged event is there at its
position and version, that no commit is partly visible, that `verify()` passes (notices allowed),
that reads (Arrow and DuckDB) work, and that the next append lands at the next position.

All trials of a test run on the *same* log, so damage would accumulate: a leftover that one trial
tolerates must not trip the next recovery, compaction or verify. To keep the folder small (every
check scans it) the writer sometimes compacts, so kills also land inside compactions. A reader
process scans the log throughout and must never fail nor see an event change or vanish.

About a third of the kills come within 50 ms (while the child opens the log, recovers, loads the
head or makes its first commit); compactions are killed at a uniform moment of their observed
duration. `--trials` sets how many kills (default 50). The random seed is printed;
CRASH_SEED=<seed> replays a failure's choices (timings on a busy machine will still differ).

The last test kills a child at each exact step of a commit and of a compaction, so every step is
covered whatever the random timings.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from log_reader import ids_digest
from logcheck import (
    HERE,
    HOT_STREAMS,
    Placed,
    check_and_continue,
    check_table,
    current_versions,
    marked_events,
    open_after_crash,
    parse_acks,
    placed,
)

from cqrs_lab import segments as fmt
from cqrs_lab.eventlog import NO_STREAM, EventLog

pytestmark = pytest.mark.slow
KILLED = -signal.SIGKILL


@dataclass
class Child:
    """A process forked by the fork server: its pid, its acks file, where its stderr starts."""

    pid: int
    acks: Path
    stderr_from: int


class ForkServer:
    """crash_writer.py: forks writers, compactions and readers on request (see its docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stderr = folder / "children.stderr"
        with self.stderr.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(HERE / "crash_writer.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self._reply() == "ready", self.errors(0)
        self.unreaped: set[int] = set()
        self.forked = 0

    def _reply(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def _send(self, command: dict[str, Any]) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def fork(self, job: str, log: Path, **options: Any) -> Child:
        """Start a child doing `job` on `log`; it is running when this returns."""
        self.forked += 1
        acks = self.folder / f"{job}-{self.forked}.jsonl"
        start = self.stderr.stat().st_size
        reply = self._send({"fork": job, "log": str(log), "acks": str(acks), **options})
        assert reply.startswith("pid "), f"{reply!r}\n{self.errors(start)}"
        child = Child(int(reply.split()[1]), acks, start)
        self.unreaped.add(child.pid)
        return child

    def kill(self, child: Child) -> None:
        """SIGKILL a child (not yet reaped, so its pid is still its own; a zombie ignores it)."""
        assert child.pid in self.unreaped
        os.kill(child.pid, signal.SIGKILL)

    def reap(self, child: Child) -> int:
        """Wait for a child to end: its exit code, or -9 if killed."""
        reply = self._send({"reap": child.pid})
        self.unreaped.discard(child.pid)
        return int(reply.split()[1])

    def output(self, child: Child) -> str:
        return child.acks.read_text() if child.acks.exists() else ""

    def errors(self, start: int) -> str:
        return self.stderr.read_text()[start:]

    def close(self) -> None:
        for pid in list(self.unreaped):
            os.kill(pid, signal.SIGKILL)
            self.reap(Child(pid, Path(), 0))
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait()
        self.process.stdout.close()


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path_factory.mktemp("forks"))
    yield server
    server.close()


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("CRASH_SEED") or random.randrange(2**32))
    print(f"CRASH_SEED={seed}")
    return random.Random(seed)


def kill_delay(rng: random.Random, longest: float) -> float:
    """Seconds to let a child run: a third of the time so little that it dies while opening the
    log, recovering or making its first commit (a forked child's first commit takes ~50 ms)."""
    return rng.uniform(0, 0.05) if rng.random() < 0.35 else rng.uniform(0.05, longest)


def run_and_kill(forks: ForkServer, child: Child, delay: float) -> tuple[str, int]:
    """Let the child run for `delay` seconds, SIGKILL it: its acks and exit status."""
    time.sleep(delay)
    forks.kill(child)
    status = forks.reap(child)
    assert status in (0, KILLED), f"the child failed by itself:\n{forks.errors(child.stderr_from)}"
    return forks.output(child), status


def what_the_kill_left(path: Path) -> list[str]:
    """Names for the traces a killed commit or compaction left in the folder (for the summary)."""
    segments, temps, _ = fmt.list_folder(path / fmt.EVENTS_DIR)
    recorded = {e.segment.name for e in fmt.parse_ledger((path / fmt.HEAD_FILE).read_bytes())[0]}
    chosen, left_out = fmt.cover(segments)
    traces = ["temp file"] * bool(temps)
    traces += ["unrecorded segment"] * any(seg.name not in recorded for seg in chosen)
    traces += ["superseded segment"] * bool(left_out)
    return traces or ["no trace"]


def keep_small(path: Path, segments: int = 32) -> None:
    """Compact (not killed) once the log has many segments: every check reads them all."""
    if len(fmt.cover(fmt.list_folder(path / fmt.EVENTS_DIR)[0])[0]) > segments:
        with open_after_crash(path) as log:
            log.compact(target_rows=500)


def has_exited(pid: int) -> bool:
    """Whether a child of the fork server has ended (a zombie, not yet reaped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class Reader:
    """A forked reader (log_reader.read_until) scanning the log for the whole test."""

    def __init__(self, forks: ForkServer, path: Path) -> None:
        self.forks, self.path = forks, path
        self.stop = path.parent / "stop-reader"
        self.child = forks.fork("reader", path, stop=str(self.stop))

    def finish(self) -> dict[str, Any]:
        """Stop it: it must never have failed, and must have seen a prefix of the final log."""
        self.stop.touch()
        deadline = time.monotonic() + 120
        while not has_exited(self.child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not has_exited(self.child.pid):  # hung: fail rather than wait for ever
            self.forks.kill(self.child)
        status = self.forks.reap(self.child)
        assert status == 0, f"a reader failed:\n{self.forks.errors(self.child.stderr_from)}"
        summary: dict[str, Any] = json.loads(self.forks.output(self.child))
        with open_after_crash(self.path) as log:
            ids = log.scan(columns=["event_id"])["event_id"].to_pylist()
        assert summary["scans"] > 0
        assert ids_digest(ids[: summary["events"]]) == summary["ids"]
        return summary

    def assert_duckdb_never_failed(self, summary: dict[str, Any]) -> None:
        """Checked last, after everything else: see test_concurrency's DuckDB race test."""
        assert summary["duckdb_failures"] == 0, (
            f"{summary['duckdb_failures']} DuckDB reads failed during compactions, e.g. "
            f"{summary['duckdb_error']}"
        )


def test_acknowledged_commits_survive_writers_killed_at_random_moments(
    tmp_path: Path, trials: int, rng: random.Random, forks: ForkServer
) -> None:
    path = tmp_path / "log"
    EventLog.create(path).close()
    reader = Reader(forks, path)
    acked: dict[str, Placed] = {}
    versions: dict[str, int] = {}
    traces: Counter[str] = Counter()
    child_acks = 0
    for trial in range(trials):
        seed = rng.randrange(2**32)
        child = forks.fork(
            "writer", path, tag=f"t{trial}", seed=seed, versions=versions, maintain=0.05
        )
        output, _ = run_and_kill(forks, child, kill_delay(rng, 0.25))
        new, _ = parse_acks(output)
        child_acks += len(new)
        acked.update(new)
        traces.update(what_the_kill_left(path))
        versions = current_versions(check_and_continue(path, acked, f"parent-{trial}"))
        keep_small(path)
    print(f"{trials} kills, {child_acks} acknowledged child events; traces {dict(traces)}")
    summary = reader.finish()
    print(f"reader: {summary}")
    assert child_acks > 0, "no child ever committed: the kills tested nothing"
    reader.assert_duckdb_never_failed(summary)


def append_batch(path: Path, acked: dict[str, Placed], tag: str, rng: random.Random) -> None:
    """A few small marked commits (new instance), so a compaction has segments to merge."""
    log = open_after_crash(path)
    try:
        versions = current_versions(log.scan(columns=["stream_id", "version"]))
        for n in range(rng.randint(5, 12)):
            streams = [rng.choice(HOT_STREAMS), f"{tag}-c{n}"][: rng.randint(1, 2)]
            expected = {s: versions.get(s, NO_STREAM) for s in streams}
            commit = log.append(marked_events(f"{tag}-c{n}", streams), expected=expected)
            versions.update((e.stream_id, e.version) for e in commit)
            acked.update(placed(commit))
    finally:
        log.close()


def test_compactions_killed_at_random_moments_lose_nothing_and_readers_never_fail(
    tmp_path: Path, trials: int, rng: random.Random, forks: ForkServer
) -> None:
    path = tmp_path / "log"
    EventLog.create(path).close()
    reader = Reader(forks, path)
    acked: dict[str, Placed] = {}
    outcomes: Counter[str] = Counter()
    longest = 0.3  # kill at a uniform moment of a compaction's duration, learnt as we go
    for trial in range(trials):
        append_batch(path, acked, f"b{trial}", rng)
        child = forks.fork("compact", path, rows=rng.choice([2, 3, 5, 8, 40, 10**6]))
        output, status = run_and_kill(forks, child, rng.uniform(0, longest))
        outcomes["finished" if status == 0 else "killed"] += 1
        if status == 0:
            longest = 1.25 * parse_acks(output)[1][0]["seconds"]
        else:
            longest *= 1.1
        outcomes.update(what_the_kill_left(path))
        check_and_continue(path, acked, f"parent-{trial}")
        keep_small(path)
    print(f"{trials} compactions: {dict(outcomes)}")
    summary = reader.finish()
    print(f"reader: {summary}")
    assert outcomes["killed"] > 0, "no compaction was ever interrupted: the kills tested nothing"
    reader.assert_duckdb_never_failed(summary)


def test_a_live_writer_keeps_every_commit_while_other_writers_are_killed(
    tmp_path: Path, trials: int, rng: random.Random, forks: ForkServer
) -> None:
    """Like the first test, but the parent appends through one long-lived EventLog throughout.

    A service keeps its log open; a neighbour killed mid-commit must not make its next commit
    fail or vanish. Half the trials (at least 10): the exact-step test below covers every step.
    """
    path = tmp_path / "log"
    acked: dict[str, Placed] = {}
    traces: Counter[str] = Counter()
    with EventLog.create(path) as live:
        acked.update(placed(live.append(marked_events("live-0", ["hot-1"]), expected={"hot-1": 0})))
        for trial in range(max(10, trials // 2)):
            with open_after_crash(path) as log:
                versions = current_versions(log.scan(columns=["stream_id", "version"]))
            child = forks.fork(
                "writer", path, tag=f"t{trial}", seed=rng.randrange(2**32), versions=versions
            )
            output, _ = run_and_kill(forks, child, kill_delay(rng, 0.25))
            acked.update(parse_acks(output)[0])
            traces.update(what_the_kill_left(path))
            live.recover()  # as its append would: a published, unrecorded commit is recorded
            with open_after_crash(path) as log:
                before = log.scan()
            check_table(before, acked)
            streams = ["hot-1", f"live-{trial}-own"][: 1 + trial % 2]
            expected = {s: current_versions(before).get(s, NO_STREAM) for s in streams}
            commit = live.append(marked_events(f"live-{trial + 1}", streams), expected=expected)
            acked.update(placed(commit))
            n = before.num_rows
            assert [e.position for e in commit] == list(range(n + 1, n + 1 + len(streams)))
            with open_after_crash(path) as log:
                check_table(log.scan(), acked)
                report = log.verify()
            assert report.ok, str(report)
    print(f"kills left {dict(traces)}")


APPEND_STEPS = ["written", "published", "recorded"]
COMPACTION_STEPS = ["written", "published", "recorded", "removing"]


@pytest.mark.parametrize("sizes", [(1, 3), (3, 1)], ids=["1-then-3", "3-then-1"])
@pytest.mark.parametrize("next_writer", ["new instance", "live instance"])
@pytest.mark.parametrize(
    ("job", "step"),
    [("writer", s) for s in APPEND_STEPS] + [("compact", s) for s in COMPACTION_STEPS],
)
def test_a_writer_killed_at_each_step_leaves_a_log_the_next_writer_continues(
    tmp_path: Path,
    forks: ForkServer,
    job: str,
    step: str,
    next_writer: str,
    sizes: tuple[int, int],
) -> None:
    """Kill a 3-event commit (or a compaction) at one exact step, then append two commits.

    The next commits must land at the next positions and stay visible, whether the next writer is
    a new EventLog or one that was open (and had loaded the head) before the kill, and whether
    its commit is as large as the killed one (same segment name) or not.
    """
    path = tmp_path / "log"
    acked: dict[str, Placed] = {}
    with contextlib.ExitStack() as stack:
        live = stack.enter_context(EventLog.create(path))
        for n in range(6):  # single-event segments: something to compact; a loaded live writer
            commit = live.append(marked_events(f"setup-{n}", ["hot-0"]), expected={"hot-0": n})
            acked.update(placed(commit))
        child = forks.fork(
            job, path, tag="dying", versions={"hot-0": 6}, size=3, rows=3, die_at=step
        )
        assert forks.reap(child) == KILLED, forks.errors(child.stderr_from)
        # A commit is durable once published: one killed before HEAD records it is not read
        # until the next writer's first append records it again; a compaction changes no event.
        visible = 6 + 3 * (job == "writer" and step == "recorded")
        pending = 3 * (job == "writer" and step == "published")
        writer = (
            live if next_writer == "live instance" else stack.enter_context(open_after_crash(path))
        )
        for n, size in enumerate(sizes):
            with open_after_crash(path) as log:
                before = log.scan()
            check_table(before, acked)
            assert before.num_rows == visible
            streams = [f"next-{n}-{i}" for i in range(size)]
            expected = dict.fromkeys(streams, NO_STREAM)
            commit = writer.append(marked_events(f"next-{n}", streams), expected=expected)
            acked.update(placed(commit))
            visible += pending
            assert [e.position for e in commit] == list(range(visible + 1, visible + 1 + size))
            visible, pending = visible + size, 0
        with open_after_crash(path) as log:
            check_table(log.scan(), acked)
            report = log.verify()
        assert report.ok, str(report)
