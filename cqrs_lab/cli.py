"""The `cqrs-lab` command line: send commands, sync, generate demos, look after logs.

Errors a user can cause (a wrong path, a damaged log, a locked store) print one line naming the
thing and exit with status 2; `log verify` exits 1 when it finds a problem.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from cqrs_lab import domain as d
from cqrs_lab import segments as fmt
from cqrs_lab.demo import generate
from cqrs_lab.errors import CqrsLabError, LogNotFoundError
from cqrs_lab.eventlog import EventLog
from cqrs_lab.lab import Lab

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
    found = (
        sorted(p for p in path.iterdir() if (p / fmt.HEAD_FILE).is_file()) if path.is_dir() else []
    )
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
            report = log.compact(
                target_rows=args.target_rows, keep_replaced_for=args.keep_replaced_for
            )
            print(f"{folder}: {report}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """Send one command; exit 1 if the lab rejected it (the rejection is recorded)."""
    command = d.command_from_payload(args.command, field_values(args.command, args.fields))
    with Lab.open(args.path) as lab:
        result = lab.send(command, actor=args.actor)
    print(result)
    return 1 if result.status == "rejected" else 0


def field_values(command_type: str, words: Sequence[str]) -> dict[str, str]:
    """`--customer-id c-7 --name=Ada` as {"customer_id": "c-7", "name": "Ada"}."""
    values: dict[str, str] = {}
    words = list(words)
    while words:
        word = words.pop(0)
        if not word.startswith("--") or len(word) < 3:
            raise d.InvalidCommandError(f"{command_type}: expected --field value, got {word!r}")
        name, has_value, value = word[2:].partition("=")
        if not has_value:
            if not words:
                raise d.InvalidCommandError(f"{command_type}: field {name!r} has no value")
            value = words.pop(0)
        values[name.replace("-", "_")] = value
    return values


def cmd_sync(args: argparse.Namespace) -> int:
    """Deliver pending messages between the services."""
    with Lab.open(args.path) as lab:
        print(lab.sync())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a shop history into a new lab."""
    report = generate(
        args.path,
        customers=args.customers,
        events=args.events,
        seed=args.seed,
        progress=None,  # a bar on a terminal for a big history
    )
    print(report)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """Run a read-only query on the read models (now, or as of a point) and print the rows."""
    with _open_lab(args.path) as lab:
        if args.as_of_position is not None or args.as_of is not None:
            view = lab.as_of(position=args.as_of_position, time=args.as_of)
            frame = view.sql(args.query)
            view.close()
        else:
            frame = lab.sql(args.query)
    if args.format == "csv":
        print(frame.to_csv(index=False), end="")
    elif args.format == "json":
        print(frame.to_json(orient="records", date_format="iso", indent=1))
    else:
        print(frame.to_string(index=False) if len(frame) else "(no rows)")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Rebuild the lab's persistent read store (read/read.duckdb) from the whole history."""
    started = time.perf_counter()
    with Lab.open(args.path, persistent=True) as lab:
        result = lab.rebuild()
    print(f"{result} in {time.perf_counter() - started:.2f} s -> {args.path / 'read'}")
    return 0


def _open_lab(path: Path) -> Lab:
    """The lab, with its persistent read store if it has one (else one in memory)."""
    return Lab.open(path, persistent=(path / "read" / "read.duckdb").exists())


def _timestamp(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _command_list() -> str:
    lines = ["commands and their fields:"]
    for name, cls in d.COMMANDS.items():
        names = " ".join(f"--{f.replace('_', '-')} V" for f in cls.__dataclass_fields__)
        lines.append(f"  {name} {names}")
    return "\n".join(lines)


EXAMPLES = """\
a first session:
  cqrs-lab demo /tmp/shop --events 20000 --seed 1     # a shop history, made by the real services
  cqrs-lab send /tmp/shop DeleteCustomer --customer-id c-1
  cqrs-lab sync /tmp/shop                              # the Order service cancels her orders
  cqrs-lab sql /tmp/shop "SELECT status, count(*) FROM orders GROUP BY ALL ORDER BY 1"
  cqrs-lab sql /tmp/shop "SELECT count(*) FROM orders" --as-of 2026-03-01T00:00
  cqrs-lab log verify /tmp/shop                        # hash chain, files and HEAD intact?

`cqrs-lab COMMAND --help` tells more. Exit status: 0 done, 1 rejected command or a verify finding,
2 a mistake in the input (one line on stderr says what and where).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `cqrs-lab`."""
    parser = argparse.ArgumentParser(
        prog="cqrs-lab",
        description="A workbench for CQRS and event sourcing on Parquet and DuckDB.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
            sub.add_argument(
                "--target-rows",
                type=int,
                default=1_000_000,
                metavar="N",
                help="rows per compacted segment (default 1000000)",
            )
            sub.add_argument(
                "--keep-replaced-for",
                type=float,
                default=60.0,
                metavar="SECONDS",
                help="keep replaced segments this long for queries already running (default 60)",
            )
    send = commands.add_parser(
        "send",
        help="send one command to a lab",
        description="Send one command to the service that owns it and print what it recorded.",
        epilog=_command_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument("path", type=Path, metavar="PATH", help="a lab folder")
    send.add_argument("command", metavar="COMMAND", help="e.g. RegisterCustomer")
    send.add_argument("--actor", default="cli", help="who sends it (recorded for audit)")
    send.set_defaults(handler=cmd_send)
    sync = commands.add_parser(
        "sync",
        help="deliver pending messages (cascades)",
        description="Deliver the Customer events the Order service has not seen yet (its replica "
        "of customers, and cascades such as cancelling a deleted customer's orders), then catch "
        "the read models up. Safe to run again: nothing is done twice.",
    )
    sync.add_argument("path", type=Path, metavar="PATH", help="a lab folder")
    sync.set_defaults(handler=cmd_sync)
    demo = commands.add_parser(
        "demo",
        help="generate a realistic shop history into a new lab",
        description="Customers register, move, order and leave over months, through the real "
        "services: cascades, rejected commands and several actors included. Deterministic: "
        "the same seed gives byte-identical logs.",
    )
    demo.add_argument("path", type=Path, metavar="PATH", help="a new lab folder")
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--customers", type=int, metavar="N", help="about N customers (default 100)")
    size.add_argument("--events", type=int, metavar="M", help="stop at about M events")
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="same seed, same bytes")
    demo.set_defaults(handler=cmd_demo)
    sql = commands.add_parser(
        "sql",
        help="query the read models with read-only SQL",
        description="Tables: customers, orders, customer_order_summary, events.",
    )
    sql.add_argument("path", type=Path, metavar="PATH", help="a lab folder")
    sql.add_argument("query", metavar="QUERY", help='e.g. "SELECT * FROM customers LIMIT 5"')
    when = sql.add_mutually_exclusive_group()
    when.add_argument("--as-of-position", type=int, metavar="N", help="after the first N events")
    when.add_argument("--as-of", type=_timestamp, metavar="TIME", help="e.g. 2026-03-01T12:00")
    sql.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="default: table"
    )
    sql.set_defaults(handler=cmd_sql)
    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild the persistent read store from history",
        description="Fold the whole history of both logs into fresh read models, kept in "
        "PATH/read/read.duckdb (later `cqrs-lab sql` calls use it).",
    )
    rebuild.add_argument("path", type=Path, metavar="PATH", help="a lab folder")
    rebuild.set_defaults(handler=cmd_rebuild)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cqrs-lab`; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.fields = extra
    if extra and args.handler is not cmd_send:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status: int = args.handler(args)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        return status
    except (CqrsLabError, duckdb.Error, OSError) as error:  # a user's mistake or a damaged file
        lines = str(error).strip().splitlines() or [type(error).__name__]
        print(f"cqrs-lab: error: {lines[0]}", file=sys.stderr)  # one line, no traceback
        return 2
    except KeyboardInterrupt:
        print("cqrs-lab: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The `cqrs-lab` console script."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `cqrs-lab ... | head` just stops quietly
    sys.exit(main())


if __name__ == "__main__":
    entry()
