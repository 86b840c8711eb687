"""Helper process of the crash tests: forks writers, compactions and readers for the test to kill.

    python crash_writer.py          # then JSON commands on stdin, one reply line each

Starting Python here costs seconds (pyarrow imports pandas on its first conversion, and this
machine compiles pandas afresh in every process), so this process imports and warms everything
once, says "ready", and then forks one short-lived child per trial. Each child is a real process
that the test kills with SIGKILL; only the start-up cost is shared.

Commands (one JSON object per line) and replies:
    {"fork": JOB, "log": PATH, "acks": PATH, ...options}  ->  "pid N"   (the child is running)
    {"reap": N}                                            ->  "status S" (-9 if killed)
A forked child is never reaped before the test says so, so its pid cannot be reused while the
test may still kill it.

Jobs:
  writer   appends marked commits forever (see logcheck.py): single events and small multi-stream
           commits with exact expected versions, NO_STREAM or ANY_VERSION; option "versions"
           gives each stream's current version, "seed" and "tag" vary the commits, "size" fixes
           the commit size, "maintain" is the chance that an iteration compacts instead.
           After each acknowledged commit it appends one JSON line to the "acks" file with one
           write(): once write() returns the line is in the kernel, so killing the process
           cannot lose it (fsync would only matter if the machine lost power).
  compact  compacts once with target_rows=option "rows", writes {"compacted", "seconds"} to the
           "acks" file and exits.
  reader   log_reader.read_until(log, option "stop"), its summary written to the "acks" file.

Option "die_at" makes the child SIGKILL itself at one exact step of its first commit or
compaction:
  written    the temp file is written and fsynced, not yet linked
  published  the segment is linked and the folder fsynced, HEAD not yet written
  recorded   HEAD is written and fsynced, the commit not yet acknowledged
  removing   (compaction) the wide segment is recorded and one narrow segment deleted
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
from log_reader import read_until
from logcheck import HOT_STREAMS, ack_line, marked_events

from cqrs_lab import writer
from cqrs_lab.eventlog import ANY_VERSION, NO_STREAM, EventLog


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """Make this process kill itself when it reaches `point` (see the module docstring)."""
    record, remove = writer.WriterState._record, writer.WriterState.remove
    if point == "written":
        os.link = lambda *args, **kwargs: die()
    elif point == "published":
        writer.WriterState._record = lambda self, entry: die()  # type: ignore[method-assign]
    elif point == "recorded":

        def record_then_die(self: writer.WriterState, entry: Any) -> None:
            record(self, entry)
            die()

        writer.WriterState._record = record_then_die  # type: ignore[method-assign]
    elif point == "removing":

        def remove_one_then_die(self: writer.WriterState, names: list[str]) -> None:
            remove(self, names[:1])
            die()

        writer.WriterState.remove = remove_one_then_die  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown die_at point {point!r}")


def streams_for(rng: random.Random, tag: str, n: int, size: int | None) -> list[str]:
    """The streams of commit n: one event, or 2-4 events over 2-3 streams (hot ones and new)."""
    if size is not None:
        return [HOT_STREAMS[0], *[f"{tag}-c{n}-s{j}" for j in range(size - 1)]]
    if rng.random() < 0.6:
        return [rng.choice(HOT_STREAMS) if rng.random() < 0.6 else f"{tag}-c{n}-s0"]
    pool = [*rng.sample(HOT_STREAMS, rng.randint(1, 2)), f"{tag}-c{n}-s0"]
    return [rng.choice(pool) for _ in range(rng.randint(2, 4))]


def append_forever(log: EventLog, job: dict[str, Any], acks: int) -> None:
    rng, tag, versions = random.Random(job.get("seed", 0)), job["tag"], dict(job["versions"])
    for n in range(1, 10**9):
        if rng.random() < job.get("maintain", 0.0):
            log.compact(target_rows=rng.choice([64, 256]))
            continue
        streams = streams_for(rng, tag, n, job.get("size"))
        expected = {
            s: ANY_VERSION if rng.random() < 0.25 else versions.get(s, NO_STREAM) for s in streams
        }
        commit = log.append(marked_events(f"{tag}-c{n}", streams), expected=expected)
        versions.update((e.stream_id, e.version) for e in commit)
        os.write(acks, ack_line(commit))


def run(job: dict[str, Any]) -> None:
    """The forked child's work."""
    acks = os.open(job["acks"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if job["fork"] == "reader":
        summary = read_until(Path(job["log"]), Path(job["stop"]))
        os.write(acks, (json.dumps(summary) + "\n").encode())
        return
    if job.get("die_at"):
        arm(job["die_at"])
    started = time.perf_counter()
    log = EventLog.open(job["log"])
    if job["fork"] == "compact":
        report = log.compact(target_rows=job["rows"])
        done = {"compacted": str(report), "seconds": time.perf_counter() - started}
        os.write(acks, (json.dumps(done) + "\n").encode())
    else:
        append_forever(log, job, acks)


def fork(job: dict[str, Any]) -> int:
    pid = os.fork()
    if pid:
        return pid
    status = 0
    try:
        run(job)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        sys.stderr.flush()
        os._exit(status)


def main() -> None:
    warnings.simplefilter("ignore")  # the test checks what opening a crashed log warns about
    pa.array(["warm up"], pa.string())  # pyarrow's first conversion imports pandas: do it once
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if "fork" in command:
            print(f"pid {fork(command)}", flush=True)
        else:
            _, status = os.waitpid(command["reap"], 0)
            print(f"status {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
