"""A reader for the fault tests: scans a log continuously and checks every scan.

    python log_reader.py LOG STOPFILE

Prints "ready", then scans (`EventLog.scan`, and every few scans DuckDB over `relation`) until
STOPFILE exists. Each scan must be a whole log (logcheck.check_table: positions exactly 1..n, each
event once, only whole commits), and must extend the previous scan: what a reader saw once never
changes or disappears. On success it prints one JSON summary line: scans, events, ids (sha256 of
the event ids it saw last, in order), duckdb_failures, duckdb_error. A failed read or check ends
it with a traceback on stderr and exit status 1, with one exception: a DuckDB read that fails
because a compaction deleted a file it was handed is counted, not fatal, so the scans go on being
checked; the tests assert that count is zero last (test_concurrency.py pins that race alone).
The crash tests run `read_until` in a child forked by crash_writer.py.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import duckdb
import pyarrow as pa
from logcheck import READ_COLUMNS, check_table, check_with_duckdb

from cqrs_lab.eventlog import EventLog

# How DuckDB says a file it was handed is gone: at bind time, and while reading.
VANISHED = ("No files found that match the pattern", "No such file or directory")


def read_until(path: Path, stop: Path) -> dict[str, object]:
    """Scan and check `path` until `stop` exists; a summary of what was seen."""
    log = EventLog.open(path)
    seen: list[str] = []
    vanished: list[str] = []
    scans = 0
    while not stop.exists():
        table = log.scan(columns=READ_COLUMNS)
        check_table(table)
        ids = table["event_id"].to_pylist()
        if ids[: len(seen)] != seen:
            raise AssertionError(f"scan {scans} changed or lost events an earlier scan saw")
        seen = ids
        scans += 1
        if scans % 4 == 0:
            try:
                check_with_duckdb(log, at_least=len(seen))
            except duckdb.IOException as error:  # a file compacted away under DuckDB's feet
                if not any(sign in str(error) for sign in VANISHED):
                    raise
                vanished.append(str(error))
        time.sleep(0.01)  # leave the CPU to the writers on a small machine
    return {
        "scans": scans,
        "events": len(seen),
        "ids": ids_digest(seen),
        "duckdb_failures": len(vanished),
        "duckdb_error": vanished[0] if vanished else None,
    }


def ids_digest(ids: list[str]) -> str:
    """What `read_until` reports for a list of event ids."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def main() -> None:
    warnings.simplefilter("ignore")  # the parent checks what opening a crashed log warns about
    pa.array(["warm up"], pa.string())  # pyarrow's first conversion imports pandas: before "ready"
    print("ready", flush=True)
    summary = read_until(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
