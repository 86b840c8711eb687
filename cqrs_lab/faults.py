"""Faults caused on purpose, with real files and real processes: the checks of notebook 06.

    >>> flip_byte(segment, offset=200)                      # tamper with one byte of a file
    >>> kill_writer_mid_commit(log_path, after_acks=3)      # SIGKILL a writer between commits
    >>> race_writers(log_path, "account-1", writers=2)      # same expected version, same moment

The writers are child processes (`python -m cqrs_lab.faults ...`, see `main`). Timing between
processes is never the same twice, so the reports' text says only what holds on every run
(every acknowledged commit is there; exactly one racer won); the details are in their fields.
Every child is waited for or killed before a function returns: no orphans.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cqrs_lab.errors import ConcurrencyError
from cqrs_lab.eventlog import NO_STREAM, EventLog, NewEvent

TIMEOUT = 60.0  # seconds a child may take to start, acknowledge or finish before we give up
EVENTS_PER_COMMIT = 2  # so a commit cut in half would show as a stream with one event


class FaultError(RuntimeError):
    """A child process of a fault experiment misbehaved (failed, hung, or said something odd)."""


# --- tampering -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlippedByte:
    """Which byte of which file was changed, from what to what."""

    file: str
    offset: int
    before: int
    after: int

    def __str__(self) -> str:
        return (
            f"{self.file}: byte {self.offset} changed from {self.before:#04x} to {self.after:#04x}"
        )

    __repr__ = __str__


def flip_byte(path: str | Path, offset: int) -> FlippedByte:
    """Invert every bit of the byte at `offset` (negative: from the end) of a file, in place."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    if not -len(data) <= offset < len(data):
        raise ValueError(f"{path} has {len(data)} bytes; there is no byte {offset}")
    offset %= len(data)
    before = data[offset]
    data[offset] = before ^ 0xFF
    path.write_bytes(bytes(data))
    return FlippedByte(path.name, offset, before, data[offset])


# --- a writer killed in the middle of its work ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class KillReport:
    """What a writer acknowledged before SIGKILL, and what the reopened log holds."""

    after_acks: int
    exit_code: int | None
    acknowledged: list[str]  # event ids the writer reported as committed
    in_log: list[str]  # event ids found in the log after recovery
    torn_commits: list[str]  # streams holding part of a commit
    recovery: list[str]  # what recovery tidied up (depends on where the kill landed)
    verify_ok: bool

    @property
    def all_acknowledged_present(self) -> bool:
        """Every event the writer acknowledged is in the reopened log."""
        return set(self.acknowledged) <= set(self.in_log)

    def __str__(self) -> str:
        killed = "SIGKILL" if self.exit_code == -signal.SIGKILL else f"exit code {self.exit_code}"
        return "\n".join(
            [
                f"writer killed by {killed} after acknowledging at least {self.after_acks} commits",
                f"  acknowledged commits present: {self.all_acknowledged_present}",
                f"  commits cut in half: {len(self.torn_commits)}",
                f"  verify() after reopening: {'OK' if self.verify_ok else 'PROBLEMS'}",
            ]
        )

    __repr__ = __str__


def kill_writer_mid_commit(log_path: str | Path, *, after_acks: int) -> KillReport:
    """Start a writer appending commits in a loop; SIGKILL it once it acknowledged `after_acks`.

    The writer is killed while it works on its next commit (wherever that commit then is: being
    written, published, recorded). The log is then reopened, recovered and verified.
    """
    with _Child([sys.executable, "-m", "cqrs_lab.faults", "writer", str(log_path)]) as child:
        for _ in range(after_acks):
            child.expect("ack ")
        child.process.send_signal(signal.SIGKILL)
        exit_code = child.finish()
    acknowledged = [i for line in child.lines if line.startswith("ack ") for i in line.split()[1:]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the leftovers it names are what recover() removes
        log = EventLog.open(log_path)
    with log:
        recovery = log.recover()
        table = log.scan(columns=["stream_id", "event_id"])
        verify_ok = log.verify().ok
    sizes = Counter(table["stream_id"].to_pylist())
    torn = sorted(s for s, n in sizes.items() if s.startswith("commit-") and n != EVENTS_PER_COMMIT)
    ids = table["event_id"].to_pylist()
    return KillReport(after_acks, exit_code, acknowledged, ids, torn, recovery, verify_ok)


# --- writers racing on one stream ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RaceReport:
    """What each racer said: the winners' new versions and the losers' ConcurrencyErrors."""

    stream_id: str
    expected: int
    winners: list[int]  # the version each winner's event got
    conflicts: list[str]  # the losers' error messages

    def __str__(self) -> str:
        racers = len(self.winners) + len(self.conflicts)
        lines = [
            f"{racers} writers appended to {self.stream_id!r} expecting version {self.expected}",
            f"  winners: {len(self.winners)}, conflicts: {len(self.conflicts)}",
        ]
        lines += [f"  ConcurrencyError: {message}" for message in sorted(set(self.conflicts))]
        return "\n".join(lines)

    __repr__ = __str__


def race_writers(log_path: str | Path, stream_id: str, *, writers: int = 2) -> RaceReport:
    """Start `writers` processes that append to `stream_id` at its current version, all at once.

    Each process opens the log and says it is ready; only then do all get the word "go", so
    their appends meet at the log's lock at the same moment.
    """
    with EventLog.open(log_path) as log:
        expected = log.stream_version(stream_id)
    command = [sys.executable, "-m", "cqrs_lab.faults", "race", str(log_path), stream_id]
    children = [_Child([*command, str(expected), str(n)]) for n in range(writers)]
    try:
        for child in children:
            child.expect("ready")
        for child in children:
            child.say("go")
        answers = [json.loads(child.expect("{")) for child in children]
        for child in children:
            code = child.finish()
            if code != 0:
                child.close()
                raise FaultError(f"{child.name} ended with exit code {code}\n{child.stderr}")
    finally:
        for child in children:
            child.close()
    winners = [int(a["version"]) for a in answers if "version" in a]
    conflicts = [str(a["conflict"]) for a in answers if "conflict" in a]
    return RaceReport(stream_id, expected, winners, conflicts)


# --- child processes -----------------------------------------------------------------------------


class _Child:
    """A child process whose stdout lines we read with a timeout (a thread drains the pipe)."""

    def __init__(self, command: Sequence[str]) -> None:
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.name = " ".join(command[2:])  # what it runs, without the interpreter's path
        self.lines: list[str] = []
        self.stderr = ""  # what the child wrote to stderr, once it has been closed
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, prefix: str) -> str:
        """The child's next stdout line, which must start with `prefix`."""
        try:
            line = self._queue.get(timeout=TIMEOUT)
        except queue.Empty:
            raise FaultError(f"{self.name}: no output within {TIMEOUT} s") from None
        if line is None or not line.startswith(prefix):
            self.close()
            raise FaultError(f"{self.name}: expected {prefix!r}, got {line!r}\n{self.stderr}")
        self.lines.append(line)
        return line

    def say(self, line: str) -> None:
        """Send one line to the child's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self) -> int:
        """Wait for the child to end; keep the lines it wrote before; its exit code."""
        code = self.process.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return code

    def close(self) -> None:
        """Kill the child if it still runs, reap it, and keep what it wrote to stderr."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        if self.process.stderr is not None and not self.process.stderr.closed:
            self.stderr = self.process.stderr.read()  # the child is gone: this cannot block
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _write_forever(log_path: str) -> None:
    """The writer child: commit k puts two events in stream commit-k, then says `ack <id>...`."""
    with EventLog.open(log_path) as log:
        for k in range(1, 10**9):
            stream = f"commit-{k}"
            events = [
                NewEvent(
                    stream_id=stream,
                    stream_type="Probe",
                    event_type="Probed",
                    payload={"commit": k, "event": i},
                    event_id=f"commit-{k}-e{i}",
                )
                for i in range(EVENTS_PER_COMMIT)
            ]
            log.append(events, expected={stream: NO_STREAM})
            # one write() per commit: once it returns, the line is the parent's to read
            os.write(1, ("ack " + " ".join(e.event_id or "" for e in events) + "\n").encode())


def _race(log_path: str, stream_id: str, expected: int, racer: int) -> None:
    """The racer child: ready, wait for go, append one event at the expected version."""
    with EventLog.open(log_path) as log:
        log.stream_version(stream_id)  # warm up (imports, first read) before the start signal
        print("ready", flush=True)
        sys.stdin.readline()
        event = NewEvent(
            stream_id=stream_id,
            stream_type="Probe",
            event_type="Raced",
            payload={"racer": racer},
        )
        try:
            commit = log.append([event], expected={stream_id: expected})
        except ConcurrencyError as error:
            print(json.dumps({"conflict": str(error)}), flush=True)
            return
        print(json.dumps({"version": commit[0].version}), flush=True)


def main(argv: Sequence[str]) -> None:
    """`writer LOG` or `race LOG STREAM EXPECTED RACER`: the child processes' entry point."""
    warnings.simplefilter("ignore")
    match list(argv):
        case ["writer", log_path]:
            _write_forever(log_path)
        case ["race", log_path, stream_id, expected, racer]:
            _race(log_path, stream_id, int(expected), int(racer))
        case _:
            raise SystemExit("usage: python -m cqrs_lab.faults writer LOG | race LOG STREAM V N")


if __name__ == "__main__":
    main(sys.argv[1:])
