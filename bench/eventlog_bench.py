"""Event-log figures: durable commit latency, bulk append throughput, full scans and compaction.

Every figure is measured for cqrs_lab and, in the same run, for the `eventsourcing` peer (see
peers.py for what exactly the peer does). Timed regions hold only the store call: events are built
before the clock starts, for cqrs_lab and the peers alike.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import peers
import workload
from harness import Context, Figure, Stopwatch, percentiles, power, report_latencies

from cqrs_lab.eventlog import NO_STREAM, EventLog, NewEvent

SCALES: dict[str, dict[str, Any]] = {
    "small": {
        "appends": 2_000,
        "bulk": {10_000: 3, 100_000: 1},  # batch size -> batches timed
        "scan_events": 1_000_000,
    },
    "full": {
        "appends": 5_000,
        "bulk": {10_000: 10, 100_000: 3},
        "scan_events": 10_000_000,
    },
}
WARMUP = 50  # appends before timing starts (first-commit costs are reported on their own)
BUILD_BATCH = 100_000  # events per commit when filling the big log
SMALL_COMMIT = 100  # events per commit in the "many small files" log
SCAN_RUNS = 3

LATENCY_TARGET_MS = 1.0
BULK_TARGET = 500_000  # events/s
SCAN_TARGET = 10_000_000  # rows/s

SCAN_SQL = """
SELECT count(*),
       count(DISTINCT stream_id),
       sum(length(payload))
FROM read_parquet($files)
"""

PEERS = ("es-sqlite", "es-sqlite-app", "es-popo", "es-popo-app")


def settings(ctx: Context) -> dict[str, Any]:
    return SCALES[ctx.scale]


# --- 1. durable single-event commit latency -------------------------------------------------------

FRESH, SAME = "fresh stream", "same stream"


def latency(ctx: Context) -> None:
    """p50/p90/p99 of appending one event per commit, on fresh streams and on one stream."""
    count = settings(ctx)["appends"]
    ctx.say(f"\n1. Durable single-event commit latency ({count} appends each, after {WARMUP})")
    for mode in (FRESH, SAME):
        samples = {"cqrs_lab": cqrs_single_appends(ctx, mode, count)}
        for kind in (peers.SQLITE, peers.POPO):
            samples[f"es-{kind}"] = recorder_single_appends(ctx, kind, mode, count)
            samples[f"es-{kind}-app"] = app_single_appends(ctx, kind, mode, count)
        key, label = f"eventlog.latency.{mode.split()[0]}", f"commit 1 event, {mode}"
        report_latencies(ctx, key, label, samples, LATENCY_TARGET_MS)


def single_event(k: int, stream: str) -> NewEvent:
    i = k * workload.STREAM_LENGTH if stream.startswith("fresh") else k
    return NewEvent(
        stream_id=stream,
        stream_type=workload.STREAM_TYPE,
        event_type="CustomerRegistered"
        if stream.startswith("fresh") or k == 0
        else "CustomerRenamed",
        payload=workload.payload(i),
    )


def cqrs_single_appends(ctx: Context, mode: str, count: int) -> list[float]:
    folder = ctx.folder(f"latency-cqrs-{mode.split()[0]}")
    log = EventLog.create(folder / "log")
    batches = []
    for k in range(WARMUP + count):
        stream = f"fresh-{k}" if mode == FRESH else "same"
        expected = NO_STREAM if mode == FRESH else k
        batches.append(([single_event(k, stream)], {stream: expected}))
    seconds, cpu = [], []
    with ctx.profiled(f"latency-{mode.split()[0]}"):
        for k, (events, expected) in enumerate(batches):
            if k == WARMUP:
                usage = resource.getrusage(resource.RUSAGE_SELF)
            start, start_cpu = time.perf_counter(), time.process_time()
            log.append(events, expected=expected)
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    used = resource.getrusage(resource.RUSAGE_SELF)
    log.close()
    if mode == FRESH:
        ctx.info(f"cqrs_lab first append on a new log in this process: {seconds[0] * 1e3:.1f} ms")
    user = (used.ru_utime - usage.ru_utime) / count
    system = (used.ru_stime - usage.ru_stime) / count
    ctx.info(
        f"cqrs_lab {mode}: CPU time per append p50 {percentiles(cpu[WARMUP:])[50]:.3f} ms, "
        f"mean {user * 1e3:.3f} ms in Python/libraries + {system * 1e3:.3f} ms in the kernel "
        "(the rest of the wall time is spent waiting: fsync, or a busy CPU)"
    )
    ctx.discard(folder)
    return seconds[WARMUP:]


def recorder_single_appends(ctx: Context, kind: str, mode: str, count: int) -> list[float]:
    folder = ctx.folder(f"latency-es-{kind}-{mode.split()[0]}")
    seconds = []
    with peers.recorder(kind, folder) as recorder:
        if kind == peers.SQLITE and mode == FRESH:
            ctx.info(f"peer SQLite settings: {peers.sqlite_settings(folder)}")
        for k in range(WARMUP + count):
            stream, version = (f"fresh-{k}", 1) if mode == FRESH else ("same", k + 1)
            data = single_event(k, stream).payload
            start = time.perf_counter()
            state = workload.encode(data).encode()  # type: ignore[arg-type]
            recorder.insert_events(
                [peers.stored_event(k, state, originator=stream, version=version)]
            )
            seconds.append(time.perf_counter() - start)
    ctx.discard(folder)
    return seconds[WARMUP:]


def app_single_appends(ctx: Context, kind: str, mode: str, count: int) -> list[float]:
    folder = ctx.folder(f"latency-es-{kind}-app-{mode.split()[0]}")
    app = peers.application(kind, folder)
    seconds = []
    if mode == FRESH:
        aggregates = [peers.Customer(**workload.payload(k * 10)) for k in range(WARMUP + count)]
        for aggregate in aggregates:
            start = time.perf_counter()
            app.save(aggregate)
            seconds.append(time.perf_counter() - start)
    else:
        aggregate = peers.Customer(**workload.payload(0))
        for k in range(WARMUP + count):
            if k:
                aggregate.rename(**workload.payload(k))
            start = time.perf_counter()
            app.save(aggregate)
            seconds.append(time.perf_counter() - start)
    app.close()
    ctx.discard(folder)
    return seconds[WARMUP:]


# --- 2. bulk append ------------------------------------------------------------------------------


def bulk(ctx: Context) -> None:
    """events/s appending batches of 10^4 and 10^5 events, payloads as dicts and as JSON text."""
    ctx.say("\n2. Bulk append (one commit per batch; median batch throughput)")
    for size, batches in settings(ctx)["bulk"].items():
        for encoded in (False, True):
            what = "JSON text" if encoded else "dicts"
            rates = {"cqrs_lab": cqrs_bulk(ctx, size, batches, encoded=encoded)}
            for kind in (peers.SQLITE, peers.POPO):
                rates[f"es-{kind}"] = recorder_bulk(ctx, kind, size, batches, encoded=encoded)
                if not encoded:  # the application API always encodes: no pre-encoded variant
                    rates[f"es-{kind}-app"] = app_bulk(ctx, kind, size, batches)
            ctx.report(
                Figure(
                    key=f"eventlog.bulk.{size}.{'json' if encoded else 'dict'}",
                    label=f"bulk append, batches of {power(size)}, payload {what}",
                    value=rates["cqrs_lab"],
                    unit="events/s",
                    target=BULK_TARGET,
                    peers={name: rates[name] for name in PEERS if name in rates},
                )
            )


def median_rate(size: int, seconds: list[float]) -> float:
    return size / sorted(seconds)[len(seconds) // 2]


def cqrs_bulk(ctx: Context, size: int, batches: int, *, encoded: bool) -> float:
    folder = ctx.folder(f"bulk-cqrs-{size}")
    log = EventLog.create(folder / "log")
    events, expected = workload.new_events(0, 1_000, encoded=encoded)
    log.append(events, expected=expected)  # warm-up commit, untimed
    seconds, cpu = [], []
    with ctx.profiled(f"bulk-{size}-{'json' if encoded else 'dict'}"):
        for n in range(batches):
            events, expected = workload.new_events(1_000 + n * size, size, encoded=encoded)
            with Stopwatch() as watch:
                start_cpu = time.process_time()
                log.append(events, expected=expected)
                cpu.append(time.process_time() - start_cpu)
            seconds.append(watch.seconds)
    log.close()
    ctx.discard(folder)
    ctx.info(
        f"cqrs_lab batches of {power(size)} {'JSON' if encoded else 'dicts'}: "
        f"{median_rate(size, cpu) / 1e3:.0f} k events per CPU-second"
    )
    return median_rate(size, seconds)


def recorder_bulk(ctx: Context, kind: str, size: int, batches: int, *, encoded: bool) -> float:
    folder = ctx.folder(f"bulk-es-{kind}-{size}")
    seconds = []
    with peers.recorder(kind, folder) as recorder:
        recorder.insert_events(peers.stored_events(0, 1_000))
        for n in range(batches):
            first = 1_000 + n * size
            if encoded:
                events = peers.stored_events(first, size)
                with Stopwatch() as watch:
                    recorder.insert_events(events)
            else:
                data = [(i, workload.payload(i)) for i in range(first, first + size)]
                with Stopwatch() as watch:
                    recorder.insert_events(
                        [peers.stored_event(i, workload.encode(p).encode()) for i, p in data]
                    )
            seconds.append(watch.seconds)
    ctx.discard(folder)
    return median_rate(size, seconds)


def app_bulk(ctx: Context, kind: str, size: int, batches: int) -> float:
    folder = ctx.folder(f"bulk-es-{kind}-app-{size}")
    app = peers.application(kind, folder)
    app.save(*peers.customers(0, 1_000))
    seconds = []
    for n in range(batches):
        aggregates = peers.customers(1_000 + n * size, size)
        with Stopwatch() as watch:
            app.save(*aggregates)
        seconds.append(watch.seconds)
    app.close()
    ctx.discard(folder)
    return median_rate(size, seconds)


# --- 3. full scans, small files and compaction --------------------------------------------------


def scan(ctx: Context) -> None:
    """rows/s of one DuckDB query over the whole log: compacted, as many small files, compacted."""
    total = settings(ctx)["scan_events"]
    commits = total // SMALL_COMMIT
    ctx.say(
        f"\n3. Full scan of {total:,} events with DuckDB "
        f"(touches stream_id and payload of every row):{SCAN_SQL}"
    )
    big, expected_answer = build_big_log(ctx, total)
    peer_rate = sqlite_peer_scan(ctx, total, expected_answer)
    compacted, compacted_s = scan_rate(ctx, big, "big log, compacted", expected_answer)
    ctx.report(
        Figure(
            key="eventlog.scan.compacted",
            label=f"scan {power(total)} events, built in 10^5 batches + compacted",
            value=compacted,
            unit="rows/s",
            target=SCAN_TARGET,
            peers={"es-sqlite": peer_rate},
            note=f"median run {compacted_s:.2f} s",
        )
    )
    ctx.discard(big)
    small = build_small_file_log(ctx, commits)
    before, before_s = scan_rate(ctx, small, f"{commits:,} small files", expected_answer)
    ctx.report(
        Figure(
            key="eventlog.scan.small_files",
            label=f"scan {power(total)} events as {power(commits)} commit files",
            value=before,
            unit="rows/s",
            peers={"es-sqlite": peer_rate},
            note=f"median run {before_s:.2f} s, {compacted / before:.1f}x slower than compacted",
        )
    )
    seconds = compact(ctx, small)
    ctx.report(
        Figure(
            key="eventlog.compaction.seconds",
            label=f"compact {power(commits)} commit files",
            value=seconds,
            unit="s",
            higher_is_better=False,
            note=f"{total / seconds / 1e6:.2f} M rows/s",
        )
    )
    after, after_s = scan_rate(ctx, small, "small files after compaction", expected_answer)
    ctx.report(
        Figure(
            key="eventlog.scan.small_files_compacted",
            label=f"scan {power(total)} events after compacting the commit files",
            value=after,
            unit="rows/s",
            target=SCAN_TARGET,
            peers={"es-sqlite": peer_rate},
            note=f"median run {after_s:.2f} s, {after / before:.1f}x faster than before compaction",
        )
    )
    ctx.discard(small)


def expected_scan_answer(total: int) -> tuple[int, int, int]:
    chars = sum(len(workload.payload_json(i)) for i in range(total))
    return total, total // workload.STREAM_LENGTH, chars


def build_big_log(ctx: Context, total: int) -> tuple[Path, tuple[int, int, int]]:
    """A log of `total` events appended in batches of BUILD_BATCH, then compacted."""
    folder = ctx.folder("scan-big")
    log = EventLog.create(folder / "log")
    appending = 0.0
    with Stopwatch() as overall:
        for first in range(0, total, BUILD_BATCH):
            events, expected = workload.new_events(
                first, min(BUILD_BATCH, total - first), encoded=True
            )
            with Stopwatch() as watch:
                log.append(events, expected=expected)
            appending += watch.seconds
    ctx.info(
        f"big log: {total:,} events in {-(-total // BUILD_BATCH)} commits: appends took "
        f"{appending:.1f} s ({total / appending / 1e3:.0f} k events/s), "
        f"{overall.seconds:.1f} s with building the events"
    )
    with Stopwatch() as watch:
        report = log.compact()
    ctx.info(f"big log compaction: {report} in {watch.seconds:.1f} s")
    log.close()
    return folder / "log", expected_scan_answer(total)


def build_small_file_log(ctx: Context, commits: int) -> Path:
    """A log of `commits` commits of SMALL_COMMIT events each: one file per commit."""
    folder = ctx.folder("scan-small-files")
    log = EventLog.create(folder / "log")
    seconds = []
    with Stopwatch() as overall, ctx.profiled("small-commits"):
        for n in range(commits):
            events, expected = workload.new_events(n * SMALL_COMMIT, SMALL_COMMIT, encoded=True)
            start = time.perf_counter()
            log.append(events, expected=expected)
            seconds.append(time.perf_counter() - start)
    log.close()
    stats = percentiles(seconds)
    appending = sum(seconds)
    ctx.info(
        f"small-files log: {commits:,} commits of {SMALL_COMMIT} events: appends took "
        f"{appending:.1f} s ({commits * SMALL_COMMIT / appending / 1e3:.0f} k events/s; "
        f"commit p50 {stats[50]:.2f} ms, p99 {stats[99]:.2f} ms), {overall.seconds:.1f} s in all"
    )
    return folder / "log"


def compact(ctx: Context, path: Path) -> float:
    with EventLog.open(path) as log, Stopwatch() as watch, ctx.profiled("compaction"):
        report = log.compact()
    ctx.info(f"compaction: {report} in {watch.seconds:.1f} s")
    return watch.seconds


def scan_rate(
    ctx: Context, path: Path, what: str, answer: tuple[int, int, int]
) -> tuple[float, float]:
    """rows/s and seconds of the median of SCAN_RUNS runs (list files, new connection, query)."""
    with EventLog.open(path) as log:
        seconds, listing, cpu = [], [], []
        for _ in range(SCAN_RUNS):
            started = time.process_time()
            with Stopwatch() as watch:
                with Stopwatch() as listed:
                    files = [str(file) for file in log.files()]
                con = duckdb.connect()
                got = con.execute(SCAN_SQL, {"files": files}).fetchall()[0]
                con.close()
            cpu.append(time.process_time() - started)
            seconds.append(watch.seconds)
            listing.append(listed.seconds)
            check(got, answer, what)
    median = sorted(seconds)[len(seconds) // 2]
    ctx.info(
        f"{what}: {len(files):,} files, runs {', '.join(f'{s:.3f}' for s in seconds)} s wall, "
        f"{', '.join(f'{s:.3f}' for s in cpu)} s CPU (all threads; "
        f"log.files() {min(listing) * 1e3:.0f} ms); DuckDB threads={duckdb_threads()}"
    )
    return answer[0] / median, median


def sqlite_peer_scan(ctx: Context, total: int, answer: tuple[int, int, int]) -> float:
    """The same events in the peer's SQLite store, and the same question asked in SQLite SQL."""
    folder = ctx.folder("scan-es-sqlite")
    appending = 0.0
    with peers.recorder(peers.SQLITE, folder) as recorder:
        for first in range(0, total, BUILD_BATCH):
            events = peers.stored_events(first, min(BUILD_BATCH, total - first))
            with Stopwatch() as watch:
                recorder.insert_events(events)
            appending += watch.seconds
    seconds = []
    for _ in range(SCAN_RUNS):
        with Stopwatch() as watch:
            got = peers.sqlite_scan(folder)
        seconds.append(watch.seconds)
        check(got, answer, "eventsourcing SQLite")
    median = sorted(seconds)[len(seconds) // 2]
    ctx.info(
        f"peer es-sqlite: {total:,} events inserted in {appending:.1f} s "
        f"({total / appending / 1e3:.0f} k events/s); scan runs "
        f"{', '.join(f'{s:.3f}' for s in seconds)} s ({total / median / 1e6:.2f} M rows/s)"
    )
    ctx.discard(folder)
    return total / median


def check(got: Any, answer: tuple[int, int, int], what: str) -> None:
    if tuple(got) != answer:
        raise AssertionError(f"{what}: scan returned {tuple(got)}, expected {answer}")


def duckdb_threads() -> str:
    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    con.close()
    return str(threads)


PARTS: dict[str, Callable[[Context], None]] = {
    "latency": latency,
    "bulk": bulk,
    "scan": scan,
}
