"""A worker process of the concurrency tests.

    python concurrent_writer.py LOG TAG SEED COMMITS {mixed|any}
    python concurrent_writer.py LOG TAG SEED STOPFILE compactor

Prints "ready" once everything is imported, waits for one stdin line ("go": all workers start
together), then works and prints one JSON line per acknowledged commit (logcheck.ack_line) and a
last line {"conflicts": n, "compactions": m}. Any exception other than the ConcurrencyErrors it
expects ends it with a traceback and exit status 1.

  mixed      COMMITS marked commits: half to a shared hot stream, whose version it reads just
             before appending (a service folding then deciding), so workers really conflict; on
             ConcurrencyError it counts, re-reads and retries. Some commits add an event to one
             of its own streams in the same commit; the rest go to its own streams only, at the
             exact versions it alone knows.
  any        COMMITS commits of 1 or 2 events to the stream "shared" with ANY_VERSION.
  compactor  compacts with random targets every few milliseconds until STOPFILE exists.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import warnings
from pathlib import Path

import pyarrow as pa
from logcheck import ack_line, marked_events

from cqrs_lab.errors import ConcurrencyError
from cqrs_lab.eventlog import ANY_VERSION, NO_STREAM, EventLog

HOT = ("hot-0", "hot-1")
RETRIES = 500


def acknowledge(commit: object) -> None:
    os.write(sys.stdout.fileno(), ack_line(commit))  # type: ignore[arg-type]


def mixed(log: EventLog, tag: str, rng: random.Random, commits: int) -> int:
    own: dict[str, int] = {}
    conflicts = 0
    for n in range(commits):
        command_id = f"{tag}-c{n}"
        if rng.random() < 0.5:
            stream = f"{tag}-own-{rng.randrange(3)}"
            commit = log.append(
                marked_events(command_id, [stream]), expected={stream: own.get(stream, NO_STREAM)}
            )
        else:
            hot = rng.choice(HOT)
            extra = [f"{tag}-own-{rng.randrange(3)}"] if rng.random() < 0.4 else []
            for _ in range(RETRIES):
                expected = {hot: log.stream_version(hot)}  # read just before appending
                expected.update((s, own.get(s, NO_STREAM)) for s in extra)
                time.sleep(rng.uniform(0, 0.003))  # deciding takes a moment
                try:
                    commit = log.append(marked_events(command_id, [hot, *extra]), expected=expected)
                    break
                except ConcurrencyError as error:
                    if error.stream_id != hot:
                        raise
                    conflicts += 1
            else:
                raise RuntimeError(f"{command_id}: still conflicting after {RETRIES} tries")
        own.update((e.stream_id, e.version) for e in commit if e.stream_id not in HOT)
        acknowledge(commit)
    return conflicts


def any_version(log: EventLog, tag: str, rng: random.Random, commits: int) -> None:
    for n in range(commits):
        streams = ["shared"] * rng.choice([1, 1, 2])
        commit = log.append(marked_events(f"{tag}-c{n}", streams), expected={"shared": ANY_VERSION})
        acknowledge(commit)
        time.sleep(rng.uniform(0, 0.002))


def compactor(log: EventLog, rng: random.Random, stop: Path) -> int:
    compactions = 0
    while not stop.exists():
        log.compact(target_rows=rng.choice([4, 16, 64, 10**6]))
        compactions += 1
        time.sleep(rng.uniform(0.01, 0.05))
    return compactions


def main() -> None:
    path, tag, seed, amount, mode = sys.argv[1:6]
    warnings.simplefilter("ignore")
    pa.array(["warm up"], pa.string())  # pyarrow's first conversion imports pandas: before "ready"
    print("ready", flush=True)
    sys.stdin.readline()
    log, rng = EventLog.open(path), random.Random(int(seed))
    conflicts = compactions = 0
    if mode == "mixed":
        conflicts = mixed(log, tag, rng, int(amount))
    elif mode == "any":
        any_version(log, tag, rng, int(amount))
    elif mode == "compactor":
        compactions = compactor(log, rng, Path(amount))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps({"conflicts": conflicts, "compactions": compactions}), flush=True)


if __name__ == "__main__":
    main()
