"""Read-model figures: full rebuild, time travel, entity history, catch-up, memory and scaling.

The labs are built in bulk, not through the services (which would take hours at 10^7 events): a
seeded `History` draws shop commands with the demo's weights (register, rename, move, delete,
place, ship, cancel; a deletion cancels the customer's open orders, as the Order service's policy
does) and turns each into the event the service would record, with the payload
`domain.event_to_payload` gives (checked on the first event of each type of every batch), stream
ids `customer-c-<n>` / `order-o-<n>`, stream types `Customer` / `Order`, command, correlation and
causation ids and an actor. Rejections and the Order service's `CustomerReplicated` rows are left
out: every row is one the read models fold. Each step is one commit per log (`EventLog.append`,
at most 50,000 events), one hour later than the previous step on the logs' clock; the logs are
compacted (`log.compact()`) whenever a size is reached.

One lab is grown through the sizes a run needs (10^5/10^6 for the rebuild and peers, 10^4 ... 10^7
for the scaling plot, 10^6/10^7 for time travel, catch-up and memory) and reused across parts;
a part that needs a smaller lab than the one grown so far builds another.

Peers (`eventsourcing` 9.x, same run): the same events, in the same order across both logs, stored
by the recorder (`insert_events`, topic = event type, state = the payload JSON plus the event's
"timestamp", as the library's own events carry it), then replayed the fastest way the library
offers: `recorder.select_notifications` in pages of 10,000, `json.loads` of each state, folded into
dicts with the same columns as the DuckDB read models (customer name denormalised onto orders
through a customer -> orders index). `es-sqlite`: SQLite file (WAL); `es-popo`: in memory.
"""

from __future__ import annotations

import atexit
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import peers
from harness import Context, Figure, Stopwatch, percentiles, power

from cqrs_lab import domain as d
from cqrs_lab import projections as p
from cqrs_lab import snapshots
from cqrs_lab.demo import FIRST, LAST, PRODUCTS, STREETS
from cqrs_lab.eventlog import EventLog, NewEvent
from cqrs_lab.lab import Lab
from cqrs_lab.readstore import ReadStore, connect
from cqrs_lab.timetravel import cut_at_time

SCALES: dict[str, dict[str, Any]] = {
    "small": {
        "rebuild_events": 100_000,
        "big_events": 1_000_000,
        "sweep": (10_000, 30_000, 100_000, 300_000, 1_000_000),
    },
    "full": {
        "rebuild_events": 1_000_000,
        "big_events": 10_000_000,
        "sweep": (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000),
    },
}
STEP_EVENTS = 50_000  # events per step: one commit per log
START = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
STEP = timedelta(hours=1)
RUNS = 3  # timed runs per figure (median reported); 2 above 10^6 events
CATCH_UP_EVENTS = 10_000
CATCH_UP_ROUNDS = 5
HISTORY_RUNS = 20
PAGE = 10_000  # notifications per select_notifications call (peer replay)

REBUILD_PEER_FACTOR = 30  # rebuild >= 30x the peer's replay
SCAN_SHARE_TARGET = 25.0  # rebuild >= 25 % of DuckDB's raw scan rate
AS_OF_TARGET_S = 1.0
HISTORY_TARGET_MS = 10.0
CATCH_UP_TARGET_MS = 50.0
RSS_TARGET_GB = 1.5

SCAN_SQL = """
SELECT count(*),
       count(DISTINCT stream_id),
       sum(length(payload)),
       max(recorded_at)
FROM read_parquet($files)
"""


def settings(ctx: Context) -> dict[str, Any]:
    return SCALES[ctx.scale]


# --- the history: realistic Customer and Order events in bulk -------------------------------------

KINDS = ("register", "rename", "move", "delete", "place", "ship", "cancel")
WEIGHTS = (14, 4, 4, 1, 40, 22, 4)  # the demo's weights (its deliberate mistakes left out)
SHOP, SUPPORT, WAREHOUSE, POLICY = (
    ("alice@shop", "bob@shop"),
    "carol@support",
    "dave@warehouse",
    "order-service",
)
CANCEL_REASONS = ("changed their mind", "out of stock", "payment failed")
PRICES = tuple((product, str(price)) for product, price in PRODUCTS.items())
NAMES = tuple(f"{first} {last}" for first in FIRST for last in LAST)
ADDRESSES = tuple(f"{number} {street}" for number in range(1, 251) for street in STREETS)
CUSTOMER_TYPES = {e.__name__ for e in d.CUSTOMER_EVENTS}
ORDER_TYPES = {e.__name__ for e in d.ORDER_EVENTS}


class IntPool:
    """A set of ints to draw from at random in O(1) (a list, and each item's index in it)."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.index: dict[int, int] = {}

    def add(self, item: int) -> None:
        self.index[item] = len(self.items)
        self.items.append(item)

    def remove(self, item: int) -> None:
        at, last = self.index.pop(item), self.items.pop()
        if last != item:
            self.items[at], self.index[last] = last, at

    def draw(self, rng: random.Random) -> int:
        return self.items[int(rng.random() * len(self.items))]

    def __contains__(self, item: int) -> bool:
        return item in self.index

    def __len__(self) -> int:
        return len(self.items)


class History:
    """A seeded shop history, produced a step (one commit per log) at a time."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.live = IntPool()  # customers not deleted
        self.open = IntPool()  # orders neither shipped nor cancelled
        self.orders_of: dict[int, list[int]] = {}
        self.customers = self.orders = self.renames = 0
        self.steps = 0
        self.now = START
        self._ids: list[str] = []

    def clock(self) -> datetime:
        """The logs' clock: the time of the current step."""
        return self.now

    def _id(self) -> str:
        """A random 32-hex-digit id (drawn in bulk: one `randbytes` call per 4,096 ids)."""
        if not self._ids:
            pool = self.rng.randbytes(16 * 4096).hex()
            self._ids = [pool[i : i + 32] for i in range(0, len(pool), 32)]
        return self._ids.pop()

    def step(self, count: int) -> tuple[list[NewEvent], list[NewEvent]]:
        """Exactly `count` new events: (Customer log's, Order log's)."""
        self.steps += 1
        self.now = START + self.steps * STEP
        rng = self.rng
        customer: list[NewEvent] = []
        order: list[NewEvent] = []
        kinds = rng.choices(KINDS, WEIGHTS, k=count)
        at = 0
        while len(customer) + len(order) < count:
            kind = kinds[at] if at < len(kinds) else "register"
            at += 1
            left = count - len(customer) - len(order)
            if not self.live:
                kind = "register"
            elif kind in ("ship", "cancel") and not self.open:
                kind = "place"
            command = self._id()
            if kind == "delete":
                c = self.live.draw(rng)
                cascade = [o for o in self.orders_of.get(c, ()) if o in self.open]
                if 1 + len(cascade) > left:
                    kind = "rename"
                else:
                    self._delete(c, cascade, command, customer, order)
                    continue
            if kind == "register":
                self.customers += 1
                c = self.customers
                self.live.add(c)
                name, address = rng.choice(NAMES), rng.choice(ADDRESSES)
                payload = f'{{"address":"{address}","customer_id":"c-{c}","name":"{name}"}}'
                customer.append(_event(c, "CustomerRegistered", payload, command, SHOP[0]))
            elif kind == "rename":
                c = self.live.draw(rng)
                self.renames += 1
                name = f"{rng.choice(NAMES)}-{self.renames}"
                payload = f'{{"customer_id":"c-{c}","name":"{name}"}}'
                customer.append(_event(c, "CustomerRenamed", payload, command, SUPPORT))
            elif kind == "move":
                c = self.live.draw(rng)
                payload = f'{{"address":"{rng.choice(ADDRESSES)}","customer_id":"c-{c}"}}'
                customer.append(_event(c, "CustomerAddressChanged", payload, command, SUPPORT))
            elif kind == "place":
                c = self.live.draw(rng)
                self.orders += 1
                o = self.orders
                self.open.add(o)
                self.orders_of.setdefault(c, []).append(o)
                product, price = rng.choice(PRICES)
                payload = (
                    f'{{"customer_id":"c-{c}","order_id":"o-{o}","product":"{product}",'
                    f'"quantity":{1 + int(rng.random() * 5)},"unit_price":"{price}"}}'
                )
                order.append(_event(o, "OrderPlaced", payload, command, rng.choice(SHOP)))
            elif kind == "ship":
                o = self.open.draw(rng)
                self.open.remove(o)
                payload = f'{{"order_id":"o-{o}"}}'
                order.append(_event(o, "OrderShipped", payload, command, WAREHOUSE))
            else:  # cancel
                o = self.open.draw(rng)
                self.open.remove(o)
                reason = rng.choice(CANCEL_REASONS)
                payload = f'{{"order_id":"o-{o}","reason":"{reason}"}}'
                order.append(_event(o, "OrderCancelled", payload, command, SUPPORT))
        check_payloads(customer)
        check_payloads(order)
        return customer, order

    def _delete(
        self,
        c: int,
        cascade: list[int],
        command: str,
        customer: list[NewEvent],
        order: list[NewEvent],
    ) -> None:
        """CustomerDeleted, and the Order service's cancellation of the customer's open orders."""
        self.live.remove(c)
        self.orders_of.pop(c, None)
        payload = f'{{"customer_id":"c-{c}"}}'
        deleted = replace(
            _event(c, "CustomerDeleted", payload, command, SUPPORT), event_id=self._id()
        )
        customer.append(deleted)
        reason = f"customer 'c-{c}' was deleted"
        for o in cascade:
            self.open.remove(o)
            payload = f'{{"order_id":"o-{o}","reason":"{reason}"}}'
            cancel = _event(o, "OrderCancelled", payload, self._id(), POLICY)
            order.append(
                replace(cancel, correlation_id=command, causation_id=deleted.event_id or "")
            )


def _event(n: int, event_type: str, payload: str, command: str, actor: str) -> NewEvent:
    kind, prefix = (
        ("Customer", "customer-c") if event_type in CUSTOMER_TYPES else ("Order", "order-o")
    )
    return NewEvent(
        stream_id=f"{prefix}-{n}",
        stream_type=kind,
        event_type=event_type,
        payload=payload,
        command_id=command,
        correlation_id=command,
        causation_id=command,
        actor=actor,
    )


def check_payloads(events: Sequence[NewEvent]) -> None:
    """The first event of each type is byte-for-byte what the services would have written."""
    seen: set[str] = set()
    for event in events:
        if event.event_type in seen:
            continue
        seen.add(event.event_type)
        assert isinstance(event.payload, str)
        domain_event = d.event_from_payload(event.event_type, json.loads(event.payload))
        canonical = json.dumps(
            d.event_to_payload(domain_event), sort_keys=True, separators=(",", ":")
        )
        if canonical != event.payload:
            raise AssertionError(f"payload {event.payload} is not the services' {canonical}")
        if event.stream_id != d.stream_id_of(domain_event):  # type: ignore[arg-type]
            raise AssertionError(f"stream id {event.stream_id} for {domain_event}")


# --- labs, grown and reused ----------------------------------------------------------------------


@dataclass
class BuiltLab:
    """A lab folder built from a History, how many events it holds, and its open Lab if any."""

    path: Path
    history: History
    events: int = 0
    build_seconds: float = 0.0
    lab: Lab | None = None

    def open(self) -> Lab:
        if self.lab is None:
            self.lab = Lab.open(self.path, clock=self.history.clock)
        return self.lab

    def close(self) -> None:
        if self.lab is not None:
            self.lab.close()
            self.lab = None

    def files(self) -> list[str]:
        with (
            EventLog.open(self.path / d.CUSTOMER_SERVICE) as customers,
            EventLog.open(self.path / d.ORDER_SERVICE) as orders,
        ):
            return customers.file_paths() + orders.file_paths()


@dataclass
class Labs:
    """The labs built in this run (a module-level cache, so parts can share them)."""

    out: Path | None = None
    built: list[BuiltLab] = field(default_factory=list)
    made: int = 0


_LABS = Labs()


def lab_of(ctx: Context, events: int) -> BuiltLab:
    """A lab of exactly `events` events: a cached one grown to that size, or a new one."""
    if _LABS.out != ctx.out:
        discard_all(ctx)
        _LABS.out = ctx.out
        atexit.register(discard_all, ctx)
    smaller = [b for b in _LABS.built if b.events <= events]
    if smaller:
        built = max(smaller, key=lambda b: b.events)
    else:
        _LABS.made += 1
        built = BuiltLab(ctx.folder(f"projections-lab-{_LABS.made}"), History(seed=1))
        Lab.create(built.path).close()
        _LABS.built.append(built)
    if built.events < events:
        grow(ctx, built, events)
    return built


def grow(ctx: Context, built: BuiltLab, events: int) -> None:
    """Append history steps until the lab holds `events` events, then compact both logs."""
    built.close()
    start, appending, generating = built.events, 0.0, 0.0
    with (
        Stopwatch() as overall,
        EventLog.open(built.path / d.CUSTOMER_SERVICE, clock=built.history.clock) as customers,
        EventLog.open(built.path / d.ORDER_SERVICE, clock=built.history.clock) as orders,
    ):
        while built.events < events:
            began = time.perf_counter()
            batch = built.history.step(min(STEP_EVENTS, events - built.events))
            generating += time.perf_counter() - began
            began = time.perf_counter()
            for log, new in zip((customers, orders), batch, strict=True):
                if new:
                    log.append(new, expected=dict.fromkeys((e.stream_id for e in new), None))
            appending += time.perf_counter() - began
            built.events += len(batch[0]) + len(batch[1])
        began = time.perf_counter()
        reports = [str(customers.compact()), str(orders.compact())]
        compacting = time.perf_counter() - began
    built.build_seconds += overall.seconds
    added = built.events - start
    ctx.info(
        f"lab {built.path.name} grown {start:,} -> {built.events:,} events in "
        f"{overall.seconds:.1f} s: generating {generating:.1f} s, "
        f"EventLog.append {appending:.1f} s "
        f"({added / max(appending, 1e-9) / 1e3:.0f} k events/s), compaction {compacting:.1f} s "
        f"(customer {reports[0]}; order {reports[1]})"
    )


def discard(ctx: Context, built: BuiltLab) -> None:
    """Close a cached lab and delete it unless --keep was given."""
    built.close()
    ctx.discard(built.path)
    _LABS.built.remove(built)


def discard_all(ctx: Context) -> None:
    """Close and delete every cached lab (after the last part, and at exit)."""
    for built in list(_LABS.built):
        discard(ctx, built)


def open_lab(ctx: Context, built: BuiltLab) -> Lab:
    """The lab's Lab (opening it folds every read model: that time is printed)."""
    if built.lab is None:
        with Stopwatch() as watch:
            built.open()
        ctx.info(
            f"Lab.open of {built.events:,} events (folds the read models): {watch.seconds:.2f} s"
        )
    assert built.lab is not None
    return built.lab


def median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def runs_for(events: int) -> int:
    return RUNS if events <= 1_000_000 else 2


# --- the fold, statement by statement (for breakdowns of missed targets) ------------------------


def fold_steps(
    con: duckdb.DuckDBPyConnection,
    lab: Lab,
    after: dict[str, int],
    upto: dict[str, int],
    *,
    keep: bool,
) -> list[tuple[str, float]]:
    """Run projections.catch_up's statements one by one and time each (ms).

    The same statements, in the same order, in one transaction; rolled back unless `keep`, so the
    live read models are left as they were.
    """
    logs = lab.read.logs
    steps: list[tuple[str, float]] = []

    def timed(what: str, sql: str, params: dict[str, Any] | None = None) -> None:
        began = time.perf_counter()
        con.execute(sql, params)
        steps.append((what, (time.perf_counter() - began) * 1e3))

    con.execute("BEGIN TRANSACTION")
    for name in ("customer", "order"):
        fresh_sql, delta_sql, insert_sql, update_sql = p.STEPS[name]
        began = time.perf_counter()
        files = logs[name].file_paths(after=after[name], upto=upto[name])
        steps.append(
            (f"{name}: file_paths ({len(files)} files)", (time.perf_counter() - began) * 1e3)
        )
        params = {"files": files, "after": after[name], "upto": upto[name]}
        if after[name] == 0:
            timed(f"{name}: FRESH_{name.upper()}S (scan + from_json + group by + insert)",
                  fresh_sql, params)  # fmt: skip
            continue
        timed(f"{name}: {name.upper()}_DELTA (scan + from_json + group by)", delta_sql, params)
        timed(f"{name}: INSERT_{name.upper()}_DELTA (new rows)", insert_sql)
        timed(f"{name}: UPDATE_{name.upper()}S (rows that exist)", update_sql)
        if name == "customer":
            timed("customer: RENAME_IN_ORDERS (update orders)", p.RENAME_IN_ORDERS)
    con.execute("COMMIT" if keep else "ROLLBACK")
    return steps


def say_steps(ctx: Context, what: str, steps: list[tuple[str, float]]) -> None:
    total = sum(ms for _, ms in steps)
    ctx.info(f"breakdown of {what} ({total:.0f} ms in all):")
    for step, ms in steps:
        ctx.say(f"        {ms:9.1f} ms  {step}")


# --- 1. full rebuild vs the peer's replay and DuckDB's raw scan -----------------------------------


def rebuild(ctx: Context) -> None:
    """lab.rebuild() throughput vs the eventsourcing replay and the raw DuckDB scan rate."""
    events = settings(ctx)["rebuild_events"]
    ctx.say(f"\n1. Full rebuild of the read models from {events:,} events (lab.rebuild())")
    built = lab_of(ctx, events)
    lab = open_lab(ctx, built)
    seconds = []
    with ctx.profiled("rebuild"):
        for _ in range(RUNS):
            with Stopwatch() as watch:
                lab.rebuild()
            seconds.append(watch.seconds)
    rate = events / median(seconds)
    ctx.info(f"lab.rebuild() runs: {', '.join(f'{s:.3f}' for s in seconds)} s")
    scan = raw_scan_rate(ctx, built)
    rates = {
        f"es-{kind}": peer_replay_rate(ctx, built, kind) for kind in (peers.SQLITE, peers.POPO)
    }
    best = max(rates.values())
    ctx.report(
        Figure(
            key="projections.rebuild.rate",
            label=f"full rebuild (lab.rebuild), {power(events)} events",
            value=rate,
            unit="events/s",
            target=REBUILD_PEER_FACTOR * best,
            peers=rates,
            note=f"target = {REBUILD_PEER_FACTOR}x the faster peer's replay",
        )
    )
    ctx.report(
        Figure(
            key="projections.scan.rate",
            label=f"DuckDB raw scan of the same files, {power(events)} events",
            value=scan,
            unit="rows/s",
        )
    )
    share = round(100 * rate / scan, 1)
    ctx.report(
        Figure(
            key="projections.rebuild.scan_share",
            label="rebuild rate as a share of the raw scan rate",
            value=share,
            unit="%",
            target=SCAN_SHARE_TARGET,
            note=f"{rate / 1e6:.2f} M / {scan / 1e6:.2f} M rows/s",
        )
    )
    if rate < REBUILD_PEER_FACTOR * best or share < SCAN_SHARE_TARGET:
        spill = ctx.folder("projections-spill")
        fresh = connect(built.path, persistent=False, memory_limit="1GB", spill=spill)
        p.create_schema(fresh)
        cut = {name: log.position for name, log in lab.read.logs.items()}
        steps = fold_steps(fresh, lab, dict.fromkeys(cut, 0), cut, keep=True)
        fresh.close()
        say_steps(ctx, f"one full fold of {power(events)} events on a fresh connection", steps)


def raw_scan_rate(ctx: Context, built: BuiltLab) -> float:
    """rows/s of SCAN_SQL over both logs' files (median of RUNS, a new connection each)."""
    seconds = []
    for _ in range(RUNS):
        with Stopwatch() as watch:
            files = built.files()
            con = duckdb.connect()
            count, streams, chars, last = con.execute(SCAN_SQL, {"files": files}).fetchall()[0]
            con.close()
        seconds.append(watch.seconds)
        if count != built.events:
            raise AssertionError(f"scan counted {count} events, the lab holds {built.events}")
    ctx.info(
        f"raw scan ({len(files)} files, {streams:,} streams, {chars:,} payload characters, "
        f"last event {last}): runs {', '.join(f'{s:.3f}' for s in seconds)} s"
    )
    return built.events / median(seconds)


# --- the peer: eventsourcing's recorder, replayed into dicts -------------------------------------

PEER_ROWS = """
SELECT stream_id, version, event_type, payload,
       strftime(recorded_at, '%Y-%m-%dT%H:%M:%S.%f+00:00') AS timestamp
FROM (
    SELECT 0 AS log, * FROM read_parquet($customer)
    UNION ALL
    SELECT 1 AS log, * FROM read_parquet($order)
)
ORDER BY recorded_at, log, position
"""


def peer_replay_rate(ctx: Context, built: BuiltLab, kind: str) -> float:
    """Store the lab's events with the peer's recorder, then time its replay into dicts."""
    folder = ctx.folder(f"projections-es-{kind}")
    with peers.recorder(kind, folder) as recorder:
        with Stopwatch() as storing:
            store_in_peer(built, recorder)
        with Stopwatch() as watch, ctx.profiled(f"peer-replay-{kind}"):
            customers, orders = peer_fold(recorder)
    check_peer_fold(built, customers, orders, kind)
    ctx.info(
        f"peer es-{kind}: {built.events:,} events stored in {storing.seconds:.1f} s (untimed); "
        f"replay into dicts {watch.seconds:.2f} s ({built.events / watch.seconds / 1e3:.0f} k "
        "events/s); its tables equal the lab's"
    )
    ctx.discard(folder)
    return built.events / watch.seconds


def store_in_peer(built: BuiltLab, recorder: Any) -> None:
    """The lab's events, both logs merged in time order, as the peer's stored events."""
    with (
        EventLog.open(built.path / d.CUSTOMER_SERVICE) as customers,
        EventLog.open(built.path / d.ORDER_SERVICE) as orders,
    ):
        files = {"customer": customers.file_paths(), "order": orders.file_paths()}
    con = duckdb.connect()
    reader = con.sql(PEER_ROWS, params=files).to_arrow_reader(100_000)
    for batch in reader:
        columns = batch.to_pydict()
        recorder.insert_events(
            [
                peers.StoredEvent(
                    originator_id=stream,
                    originator_version=version,
                    topic=event_type,
                    state=f'{payload[:-1]},"timestamp":"{when}"}}'.encode(),
                )
                for stream, version, event_type, payload, when in zip(
                    columns["stream_id"],
                    columns["version"],
                    columns["event_type"],
                    columns["payload"],
                    columns["timestamp"],
                    strict=True,
                )
            ]
        )
    con.close()


def peer_fold(recorder: Any) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The read models folded from the peer's notification log, in plain Python dicts."""
    customers: dict[str, dict[str, Any]] = {}
    orders: dict[str, dict[str, Any]] = {}
    orders_of: dict[str, list[dict[str, Any]]] = {}
    loads = json.loads
    start = 1
    while page := recorder.select_notifications(start, PAGE):
        for note in page:
            data, topic = loads(note.state), note.topic
            when, version = data["timestamp"], note.originator_version
            if topic == "OrderPlaced":
                cid, price = data["customer_id"], Decimal(data["unit_price"])
                customer = customers.get(cid)
                row = {
                    "order_id": data["order_id"], "customer_id": cid,
                    "customer_name": customer["name"] if customer else None,
                    "product": data["product"], "quantity": data["quantity"],
                    "unit_price": price, "amount": data["quantity"] * price, "status": "open",
                    "placed_at": when, "shipped_at": None, "cancelled_at": None,
                    "cancel_reason": None,
                }  # fmt: skip
                orders[data["order_id"]] = row
                orders_of.setdefault(cid, []).append(row)
            elif topic == "OrderShipped":
                row = orders[data["order_id"]]
                row["status"], row["shipped_at"] = "shipped", when
            elif topic == "OrderCancelled":
                row = orders[data["order_id"]]
                row["status"], row["cancelled_at"] = "cancelled", when
                row["cancel_reason"] = data["reason"]
            elif topic == "CustomerRegistered":
                row = {
                    "customer_id": data["customer_id"], "name": data["name"],
                    "address": data["address"], "status": "active", "registered_at": when,
                    "deleted_at": None,
                }  # fmt: skip
                customers[data["customer_id"]] = row
            elif topic == "CustomerRenamed":
                row = customers[data["customer_id"]]
                row["name"] = data["name"]
                for order in orders_of.get(data["customer_id"], ()):
                    order["customer_name"] = data["name"]
            elif topic == "CustomerAddressChanged":
                row = customers[data["customer_id"]]
                row["address"] = data["address"]
            elif topic == "CustomerDeleted":
                row = customers[data["customer_id"]]
                row["status"], row["deleted_at"] = "deleted", when
            else:
                continue
            row["updated_at"], row["version"] = when, version
        start = page[-1].id + 1
    return customers, orders


CHECK_SQL = """
SELECT (SELECT count(*) FROM customers),
       (SELECT count(*) FROM customers WHERE status = 'deleted'),
       (SELECT count(*) FROM orders),
       (SELECT count(*) FROM orders WHERE status = 'shipped'),
       (SELECT count(*) FROM orders WHERE status = 'cancelled'),
       (SELECT sum(amount) FROM orders),
       (SELECT count(*) FROM orders JOIN customers USING (customer_id)
        WHERE orders.customer_name = customers.name),
       (SELECT sum(version) FROM customers) + (SELECT sum(version) FROM orders)
"""


def check_peer_fold(
    built: BuiltLab,
    customers: dict[str, dict[str, Any]],
    orders: dict[str, dict[str, Any]],
    kind: str,
) -> None:
    """The peer's dicts and the lab's read models agree on counts, amounts, names and versions."""
    lab = built.open()
    lab.read.catch_up()
    ours = tuple(lab.con.execute(CHECK_SQL).fetchall()[0])
    rows = orders.values()
    theirs = (
        len(customers),
        sum(c["status"] == "deleted" for c in customers.values()),
        len(orders),
        sum(o["status"] == "shipped" for o in rows),
        sum(o["status"] == "cancelled" for o in rows),
        sum(o["amount"] for o in rows),
        sum(o["customer_name"] == customers[o["customer_id"]]["name"] for o in rows),
        sum(c["version"] for c in customers.values()) + sum(o["version"] for o in rows),
    )
    if ours != theirs:
        raise AssertionError(
            f"es-{kind} replay differs from the lab's read models: {theirs} != {ours}"
        )


# --- 2. rebuild time vs events, and the plot ----------------------------------------------------


def scaling(ctx: Context) -> None:
    """lab.rebuild() time from 10^4 events up to the largest size, plotted on log-log axes."""
    sizes = settings(ctx)["sweep"]
    ctx.say(f"\n2. Rebuild time vs events ({', '.join(power(n) for n in sizes)})")
    points: list[tuple[int, float]] = []
    for events in sizes:
        built = lab_of(ctx, events)
        lab = open_lab(ctx, built)
        seconds = []
        for _ in range(runs_for(events)):
            with Stopwatch() as watch:
                lab.rebuild()
            seconds.append(watch.seconds)
        points.append((events, median(seconds)))
        ctx.info(
            f"{events:>12,} events: rebuild {median(seconds):.3f} s "
            f"({events / median(seconds) / 1e6:.2f} M events/s; runs "
            f"{', '.join(f'{s:.3f}' for s in seconds)})"
        )
        for other in list(_LABS.built):  # labs the sweep has outgrown
            if other is not built and other.events < events:
                discard(ctx, other)
    largest, seconds = points[-1]
    ctx.report(
        Figure(
            key="projections.rebuild.largest",
            label=f"full rebuild, {power(largest)} events",
            value=largest / seconds,
            unit="events/s",
            note=f"{seconds:.2f} s",
        )
    )
    path = plot(ctx, points)
    ctx.info(f"plot: {path}")


def plot(ctx: Context, points: list[tuple[int, float]]) -> Path:
    """Rebuild time vs events on log-log axes, with a line proportional to events (through the
    point nearest 10^6 events: both scales have one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [n for n, _ in points]
    seconds = [s for _, s in points]
    anchor, anchor_seconds = min(points, key=lambda point: abs(point[0] - 1_000_000))
    per_event = anchor_seconds / anchor
    figure, axes = plt.subplots(figsize=(7, 5))
    axes.loglog(sizes, seconds, "o-", label="lab.rebuild() (median run)")
    axes.loglog(
        sizes,
        [n * per_event for n in sizes],
        "--",
        color="grey",
        label=f"linear reference through {power(anchor)}: {1 / per_event / 1e6:.2f} M events/s",
    )
    axes.set_xlabel("events in the lab (Customer + Order logs)")
    axes.set_ylabel("rebuild time (s)")
    axes.set_title(f"cqrs_lab: full rebuild of the read models vs history size ({ctx.scale} scale)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    path = ctx.out / "projections-rebuild-scaling.png"
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# --- 3. time travel and entity history on the big lab -------------------------------------------


def time_travel(ctx: Context) -> None:
    """lab.as_of(time=mid-history) and lab.history(stream_id) on the biggest lab."""
    events = settings(ctx)["big_events"]
    ctx.say(f"\n3. Time travel on {events:,} events")
    built = lab_of(ctx, events)
    lab = open_lab(ctx, built)
    middle = START + (built.history.steps // 2) * STEP
    half = sum(cut_at_time(lab.con, lab.read.logs, middle).values())
    # Snapshots sit at multiples of EVERY events of the lab; the cuts timed: mid-history, 2 steps
    # past it, and the worst case, one event short of the first multiple after mid-history (the
    # most events folded on top of a snapshot).
    worst_position = (half // snapshots.EVERY + 1) * snapshots.EVERY - 1
    cuts = {
        "time=mid-history": {"time": middle},
        "time=mid-history + 2 steps": {"time": middle + 2 * STEP},
        f"position={worst_position:,} (worst case)": {"position": worst_position},
    }
    firsts = []
    with Stopwatch() as warm:
        for where in cuts.values():
            with Stopwatch() as first:
                lab.as_of(**where).close()
            firsts.append(first.seconds)
    made = snapshots.found(lab.path)
    size = sum(f.stat().st_size for s in made for f in s.path.iterdir())
    ctx.info(
        f"first as_of of each cut (untimed, makes the snapshots it needs): "
        f"{', '.join(f'{s:.1f}' for s in firsts)} s ({warm.seconds:.1f} s in all); "
        f"{len(made)} snapshots (one every {snapshots.EVERY:,} events where needed), "
        f"{size / 2**20:.0f} MiB"
    )
    worst, worst_label = 0.0, ""
    with ctx.profiled("as-of"):
        for label, where in cuts.items():
            seconds, first_query = [], []
            for _ in range(runs_for(events)):
                with Stopwatch() as watch:
                    view = lab.as_of(**where)
                seconds.append(watch.seconds)
                with Stopwatch() as query:
                    rows = view.sql("SELECT count(*) AS n FROM orders")["n"][0]
                first_query.append(query.seconds)
                cut = view.cut
                view.close()
            ctx.info(
                f"as_of({label}): cut {cut} ({sum(cut.values()):,} events, {rows:,} orders); "
                f"runs {', '.join(f'{s:.3f}' for s in seconds)} s; then count(*) of orders "
                f"{', '.join(f'{s * 1e3:.0f}' for s in first_query)} ms"
            )
            if median(seconds) >= worst:
                worst, worst_label = median(seconds), label
    ctx.report(
        Figure(
            key="projections.as_of.seconds",
            label=f"lab.as_of(), slowest of {len(cuts)} cuts, {power(events)} events",
            value=worst,
            unit="s",
            target=AS_OF_TARGET_S,
            higher_is_better=False,
            note=f"{worst_label}; snapshots made before (untimed)",
        )
    )
    if worst > AS_OF_TARGET_S:
        as_of_breakdown(ctx, lab, middle + 2 * STEP)
    for log_name in ("customer", "order"):
        with Stopwatch() as indexing:
            lab.read.streams[log_name].refresh(lab.con)
        ctx.info(
            f"stream index of the {log_name} log made/checked (untimed): {indexing.seconds:.1f} s"
        )
    for kind, log in (("customer", lab.customer_log), ("order", lab.order_log)):
        stream, count = busiest_stream(log)
        samples = []
        with ctx.profiled(f"history-{kind}"):
            for _ in range(HISTORY_RUNS):
                began = time.perf_counter()
                frame = lab.history(stream)
                samples.append(time.perf_counter() - began)
        if len(frame) != count:
            raise AssertionError(f"history({stream}) has {len(frame)} rows, expected {count}")
        stats = percentiles(samples)
        ctx.report(
            Figure(
                key=f"projections.history.{kind}",
                label=f"lab.history() of one {kind} ({count} events), p50",
                value=stats[50],
                unit="ms",
                target=HISTORY_TARGET_MS,
                higher_is_better=False,
                note=f"p90 {stats[90]:.1f} ms",
            )
        )
        if stats[50] > HISTORY_TARGET_MS:
            history_breakdown(ctx, lab, log, stream)


BUSIEST_SQL = """
SELECT stream_id, count(*)
FROM read_parquet($files)
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT 1
"""


def busiest_stream(log: EventLog) -> tuple[str, int]:
    """The stream with the most events (ties: the smallest id)."""
    con = duckdb.connect()
    row = con.execute(BUSIEST_SQL, {"files": log.file_paths()}).fetchall()[0]
    con.close()
    return str(row[0]), int(row[1])


def as_of_breakdown(ctx: Context, lab: Lab, when: datetime) -> None:
    """Where as_of's time goes: the cut, the nearest snapshot, then each statement folding on it."""
    steps: list[tuple[str, float]] = []
    logs = lab.read.logs
    began = time.perf_counter()
    cut = cut_at_time(lab.con, logs, when)
    steps.append(("cut_at_time (both logs)", (time.perf_counter() - began) * 1e3))
    began = time.perf_counter()
    store = ReadStore(lab.path, logs, upto=cut)
    steps.append(("new sandboxed read store", (time.perf_counter() - began) * 1e3))
    began = time.perf_counter()
    start = snapshots.nearest(store.con, lab.path, logs, cut)
    steps.append(("snapshots.nearest (checks the hashes)", (time.perf_counter() - began) * 1e3))
    if start is not None:
        timed = TimedConnection(store.con)
        snapshots.fold_on(timed, logs, start, cut)  # type: ignore[arg-type]
        steps += timed.steps
    store.close()
    say_steps(ctx, f"as_of({when:%Y-%m-%d %H:%M}), statement by statement", steps)


class TimedConnection:
    """A connection that times each statement it runs, named after the package's constant."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.steps = con, []
        self.names = {
            sql: name
            for module in (p, snapshots)
            for name, sql in vars(module).items()
            if name.isupper() and isinstance(sql, str)
        }

    def execute(self, sql: str, *args: Any) -> Any:
        began = time.perf_counter()
        result = self.con.execute(sql, *args)
        self.steps.append(
            (self.names.get(sql, sql.split()[0]), (time.perf_counter() - began) * 1e3)
        )
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def history_breakdown(ctx: Context, lab: Lab, log: EventLog, stream: str) -> None:
    """history() = the stream's rows from the stream index (+ the log's tail) + a Python fold."""
    name = "order" if stream.startswith("order-") else "customer"
    samples = []
    for _ in range(5):
        began = time.perf_counter()
        lab.read.streams[name].stream(lab.con, stream)
        samples.append((time.perf_counter() - began) * 1e3)
    files = lab.read.streams[name].refresh(lab.con)
    ctx.info(
        f"breakdown of history({stream}): reading its rows from {len(files)} index files "
        f"(+ the unindexed tail of the log) {median(samples):.1f} ms of it"
    )


# --- 4. peak memory of a full rebuild ------------------------------------------------------------

CHILD = """
import json, sys, time
from pathlib import Path


def high_water() -> int:  # this process's peak RSS in KiB (VmHWM: reset by exec, unlike ru_maxrss)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


from cqrs_lab.lab import Lab

base = high_water()
began = time.perf_counter()
lab = Lab.open(sys.argv[1])
opened = time.perf_counter() - began
after_open = high_water()
began = time.perf_counter()
lab.rebuild()
rebuilt = time.perf_counter() - began
lab.close()
print(json.dumps({"base_kb": base, "open_kb": after_open, "peak_kb": high_water(),
                  "open_s": opened, "rebuild_s": rebuilt}))
"""


def memory(ctx: Context) -> None:
    """Peak RSS of a fresh process that opens the biggest lab (a full fold), then rebuilds it.

    Read from the child's own /proc/self/status (VmHWM): `ru_maxrss` (RUSAGE_SELF or
    RUSAGE_CHILDREN) is inherited across fork+exec on Linux, so a child of a big parent would
    report the parent's size.
    """
    events = settings(ctx)["big_events"]
    ctx.say(f"\n4. Peak memory of Lab.open + lab.rebuild() on {events:,} events (a child process)")
    built = lab_of(ctx, events)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(built.path)], capture_output=True, text=True, check=True
    )
    child = json.loads(done.stdout.strip().splitlines()[-1])
    peak = child["peak_kb"] / 2**20
    ctx.info(
        f"child: RSS after imports {child['base_kb'] / 2**10:.0f} MiB, after Lab.open "
        f"{child['open_kb'] / 2**10:.0f} MiB ({child['open_s']:.1f} s), after rebuild "
        f"{child['peak_kb'] / 2**10:.0f} MiB ({child['rebuild_s']:.1f} s); DuckDB memory_limit 1GB"
    )
    ctx.report(
        Figure(
            key="projections.rebuild.peak_rss",
            label=f"peak RSS of Lab.open + rebuild, {power(events)} events",
            value=round(peak, 3),
            unit="GiB",
            target=RSS_TARGET_GB,
            higher_is_better=False,
        )
    )


# --- 5. catch-up of 10^4 new events on the big lab ------------------------------------------------


def catch_up(ctx: Context) -> None:
    """lab.read.catch_up() after appending 10^4 realistic events to the biggest lab."""
    events = settings(ctx)["big_events"]
    ctx.say(
        f"\n5. Catch-up of {CATCH_UP_EVENTS:,} new events on {events:,} "
        f"({CATCH_UP_ROUNDS} rounds after one untimed)"
    )
    built = lab_of(ctx, events)
    lab = open_lab(ctx, built)
    lab.read.catch_up()
    samples = []
    with ctx.profiled("catch-up"):
        for round_ in range(CATCH_UP_ROUNDS + 1):
            append_step(built, lab, CATCH_UP_EVENTS)
            with Stopwatch() as watch:
                report = lab.read.catch_up()
            if sum(report.folded.values()) != CATCH_UP_EVENTS:
                raise AssertionError(f"catch-up folded {report.folded}")
            if round_:
                samples.append(watch.seconds * 1e3)
    ctx.info(f"catch-up runs: {', '.join(f'{s:.1f}' for s in samples)} ms")
    ctx.report(
        Figure(
            key="projections.catch_up.ms",
            label=f"catch-up of {power(CATCH_UP_EVENTS)} new events on {power(events)}",
            value=median(samples),
            unit="ms",
            target=CATCH_UP_TARGET_MS,
            higher_is_better=False,
            note=f"max {max(samples):.1f} ms",
        )
    )
    if median(samples) > CATCH_UP_TARGET_MS:
        before = {name: log.position for name, log in lab.read.logs.items()}
        append_step(built, lab, CATCH_UP_EVENTS)
        after = {name: log.position for name, log in lab.read.logs.items()}
        say_steps(ctx, "one catch-up", fold_steps(lab.con, lab, before, after, keep=False))
        lab.read.catch_up()
    discard_all(ctx)


def append_step(built: BuiltLab, lab: Lab, count: int) -> None:
    """One history step appended through the lab's own logs (one commit each)."""
    customer, order = built.history.step(count)
    for log, new in ((lab.customer_log, customer), (lab.order_log, order)):
        if new:
            log.append(new, expected=dict.fromkeys((e.stream_id for e in new), None))
    built.events += len(customer) + len(order)


PARTS: dict[str, Callable[[Context], None]] = {
    "rebuild": rebuild,
    "scaling": scaling,
    "timetravel": time_travel,
    "memory": memory,
    "catchup": catch_up,
}
