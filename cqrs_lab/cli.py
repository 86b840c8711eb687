"""The `cqrs-lab` command line: look after logs (`log info|verify|compact`), and more to come.

Errors a user can cause (a wrong path, a damaged log, a locked store) print one line naming the
thing and exit with status 2; `log verify` exits 1 when it finds a problem.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from cqrs_lab import segments as fmt
from cqrs_lab.errors import CqrsLabError, LogNotFoundError
from cqrs_lab.eventlog import EventLog

INFO_SQL = """
SELECT count(*) AS events,
       count(DISTINCT stream_id) AS streams,
       min(recorded_at) AS first_recorded,
       max(recorded_at) AS last_recorded
FROM events
"""
TYPES_SQL = """
SELECT event_type, count(*) AS events
FROM events
GROUP BY event_type
ORDER BY events DESC, event_type
"""


def log_folders(path: Path) -> list[Path]:
    """The logs at `path`: the folder itself if it is a log, else each log folder inside it."""
    if (path / fmt.HEAD_FILE).is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / fmt.HEAD_FILE).is_file()) if path.is_dir() else []
    if not found:
        raise LogNotFoundError(f"no event log at {path} (neither a log folder nor a lab folder)")
    return found


def cmd_log_info(args: argparse.Namespace) -> int:
    """Print size, span and event types of each log."""
    for folder in log_folders(args.path):
        with EventLog.open(folder) as log:
            files = log.files()
            size = sum(path.stat().st_size for path in files)
            print(f"{folder}: {len(files)} segments, {size / 1e6:.2f} MB")
            con = duckdb.connect(config={"autoinstall_known_extensions": False})
            log.relation(con).create_view("events")
            events, streams, first, last = con.execute(INFO_SQL).fetchall()[0]
            print(f"  {events} events in {streams} streams, recorded {first} .. {last}")
            for event_type, count in con.execute(TYPES_SQL).fetchall():
                print(f"  {count:>10}  {event_type}")
    return 0


def cmd_log_verify(args: argparse.Namespace) -> int:
    """Verify each log; exit 1 if any has a problem."""
    ok = True
    for folder in log_folders(args.path):
        with EventLog.open(folder) as log:
            report = log.verify()
        print(report)
        ok = ok and report.ok
    return 0 if ok else 1


def cmd_log_compact(args: argparse.Namespace) -> int:
    """Compact each log."""
    for folder in log_folders(args.path):
        with EventLog.open(folder) as log:
            print(f"{folder}: {log.compact(target_rows=args.target_rows)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `cqrs-lab`."""
    parser = argparse.ArgumentParser(
        prog="cqrs-lab",
        description="A workbench for CQRS and event sourcing on Parquet and DuckDB.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    log = commands.add_parser("log", help="inspect and look after event logs")
    log_commands = log.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    path_help = "a log folder, or a lab folder (then every log in it)"
    actions: list[tuple[str, str, Callable[[argparse.Namespace], int]]] = [
        ("info", "events, streams, size and event types", cmd_log_info),
        ("verify", "check files, hash chain and HEAD; exit 1 on any problem", cmd_log_verify),
        ("compact", "merge small segments into large ones (crash-safe)", cmd_log_compact),
    ]
    for name, help_text, handler in actions:
        sub = log_commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("path", type=Path, metavar="PATH", help=path_help)
        sub.set_defaults(handler=handler)
        if name == "compact":
            sub.add_argument("--target-rows", type=int, default=1_000_000, metavar="N")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cqrs-lab`; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status: int = args.handler(args)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        return status
    except CqrsLabError as error:
        print(f"cqrs-lab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
