"""Service figures: one command end to end, the demo generator, and a deletion cascade.

1. ``demo``: `cqrs_lab.demo.generate(path, events=N, seed=1)` in this process (what `cqrs-lab demo`
   runs), as events/s; at small scale a second run with the same seed must give byte-identical
   files (sha256 of every file of both labs). Its lab is kept for the next two parts.
2. ``send``: `lab.send(command)` on that lab (10^5 / 10^6 events already in its logs), timed
   around the call: load (the service's cached state, refreshed from the log's tail), decide,
   one durable append. Commands cycle rename customer / place order / ship order, on live
   customers and open orders of the demo's history. The first command of each service after
   `Lab.open` folds that service's whole log into its cache: printed on its own, then 30 more
   untimed commands, then the timed ones.
3. ``cascade``: a customer with 1,000 orders (100 of them shipped, so the cascade also records
   100 refused cancellations, as the design wants) placed and synced; then `DeleteCustomer` and
   `lab.sync()` timed: the Order service cancels the open orders in one commit, updates its
   replica, and the read models catch up. Median of 3, then one more split into delivery and
   catch-up.

The peer (`eventsourcing` 9.x, same run): the same aggregates written the way its documentation
shows: an `Aggregate` per customer and per order (`@event` methods), an `Application` whose
command methods do `repository.get` (load), check the same rules (decide), mutate and `save`
(one transaction). Before timing it stores as many events as the lab holds: the real history of
every stream the commands touch (the demo lab's events of those customers and orders, replayed
through the aggregates in time order), and the workload's customer streams for the rest, stored
with the recorder (a load reads only its own stream, so the rest only sizes tables and indexes).
`es-sqlite-app`: SQLite file (WAL, synchronous=FULL: one fsync per save); `es-popo-app`: in
memory (not durable). In the cascade the peer deletes the customer and cancels its open orders in
one `save` (its order ids from an in-memory index, as the Order service keeps one); it has no
messaging or read models.

The demo makes two commits per round whatever its size (one per service: the Order service's
holds the previous round's delivery, cascades included, then the round's orders), about 1,250 at
10^5 and 10^6 events; so at 10^5 its time is mostly fsyncs (seconds on a quiet machine, several
times more under load) and at 10^6 mostly CPU per event. The send part also prints the time a
send spends outside `EventLog.append` (the service's share: refresh, decide, fold, result).

Run times (2-core VM shared with other jobs, load average 4-7): small ~1.5 min.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import duckdb
import peers
import workload
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from harness import Context, Figure, Stopwatch, percentiles, power, report_latencies

from cqrs_lab import demo, segments
from cqrs_lab import domain as d
from cqrs_lab.lab import Lab
from cqrs_lab.messaging import deliver

SCALES: dict[str, dict[str, Any]] = {
    "small": {"events": 100_000, "sends": 1_200, "twin": True},
    "full": {"events": 1_000_000, "sends": 3_000, "twin": False},
}
SEED = 1
WARMUP = 30  # untimed commands after the first one of each service
CASCADE_ORDERS = 1_000
CASCADE_SHIPPED = 100  # of those, shipped before the deletion: their cancellations are refused
CASCADES = 3
REPLAY_BATCH = 10_000  # events per peer save while replaying the touched streams
FILL_BATCH = 100_000  # events per recorder insert of the workload's filler streams

SEND_TARGET_MS = 1.0
DEMO_TARGET = 1_000_000 / 60  # events/s: 10^6 events in 60 s
CASCADE_TARGET_S = 1.0


def settings(ctx: Context) -> dict[str, Any]:
    return SCALES[ctx.scale]


# --- the demo lab, shared by the parts ----------------------------------------------------------


@dataclass
class State:
    """What the parts of one run share: the demo lab and its open Lab."""

    out: Path | None = None
    path: Path | None = None
    events: int = 0
    lab: Lab | None = None
    folders: list[Path] = field(default_factory=list)


_STATE = State()


def demo_lab(ctx: Context) -> Path:
    """The demo lab of this run (generated now if the demo part did not run)."""
    if _STATE.out != ctx.out:
        start_run(ctx)
    if _STATE.path is None:
        events = settings(ctx)["events"]
        path, report, seconds = generate(ctx, "services-demo", events)
        ctx.info(f"demo lab: {report} generated in {seconds:.1f} s")
        _STATE.path, _STATE.events = path, report.events
    return _STATE.path


def generate(ctx: Context, name: str, events: int) -> tuple[Path, demo.DemoReport, float]:
    folder = ctx.folder(name)
    _STATE.folders.append(folder)
    with Stopwatch() as watch, ctx.profiled(name):
        report = demo.generate(folder / "lab", events=events, seed=SEED)
    return folder / "lab", report, watch.seconds


def open_lab(ctx: Context) -> Lab:
    """The demo lab, opened once per run (Lab.open folds the read models: timed)."""
    path = demo_lab(ctx)
    if _STATE.lab is None:
        with Stopwatch() as watch:
            _STATE.lab = Lab.open(path)
        ctx.info(f"Lab.open of the demo lab (folds the read models): {watch.seconds:.1f} s")
    return _STATE.lab


def start_run(ctx: Context) -> None:
    """Forget a previous run's state; clean this run's folders up at exit."""
    cleanup(ctx)
    _STATE.out = ctx.out
    atexit.register(cleanup, ctx)


def cleanup(ctx: Context) -> None:
    """Close the shared lab and delete this run's folders unless --keep."""
    if _STATE.lab is not None:
        _STATE.lab.close()
    for folder in _STATE.folders:
        ctx.discard(folder)
    _STATE.path, _STATE.lab, _STATE.folders = None, None, []


# --- 1. the demo generator -----------------------------------------------------------------------


def demo_part(ctx: Context) -> None:
    """`demo.generate(events=N, seed=1)`: events/s, and byte-identical output for one seed."""
    events = settings(ctx)["events"]
    ctx.say(f"\n1. Demo generator: demo.generate(path, events={events:,}, seed={SEED})")
    if _STATE.out != ctx.out:
        start_run(ctx)
    path, report, seconds = generate(ctx, "services-demo", events)
    _STATE.path, _STATE.events, _STATE.lab = path, report.events, None
    commits = {log: commit_count(path / log) for log in (d.CUSTOMER_SERVICE, d.ORDER_SERVICE)}
    ctx.info(
        f"{report}; {seconds:.1f} s; commits: customer {commits['customer']:,}, "
        f"order {commits['order']:,} (each one durable append)"
    )
    ctx.report(
        Figure(
            key="services.demo.rate",
            label=f"cqrs-lab demo, {power(events)} events",
            value=report.events / seconds,
            unit="events/s",
            target=DEMO_TARGET,
            note=f"{seconds:.1f} s; target = 10^6 events in 60 s",
        )
    )
    if not settings(ctx)["twin"]:
        ctx.info("byte-identical output for one seed: checked at small scale")
        return
    twin, _, twin_seconds = generate(ctx, "services-demo-twin", events)
    ours, theirs = file_hashes(path), file_hashes(twin)
    differing = sorted(
        name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name)
    )
    ctx.info(
        f"second run with seed {SEED}: {twin_seconds:.1f} s; {len(ours)} files compared by "
        f"sha256, {len(differing)} differ{': ' + ', '.join(differing[:5]) if differing else ''}"
    )
    ctx.report(
        Figure(
            key="services.demo.deterministic",
            label="demo, same seed twice: files that differ",
            value=len(differing),
            unit="files",
            target=0,
            higher_is_better=False,
            note=f"of {len(ours)}",
        )
    )
    _STATE.folders.remove(twin.parent)
    ctx.discard(twin.parent)


def commit_count(log: Path) -> int:
    """How many commits a log's HEAD records (compaction records, which rewrite positions
    already covered, are not commits)."""
    entries, _, _ = segments.parse_ledger((log / segments.HEAD_FILE).read_bytes())
    commits = end = 0
    for entry in entries:
        if entry.segment.first == end + 1:
            commits += 1
        end = max(end, entry.segment.last)
    return commits


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --- the peer: eventsourcing aggregates and application -------------------------------------------

_IDS = uuid5(NAMESPACE_URL, "https://github.com/cqrs-lab/bench/services")


class EsCustomer(Aggregate):
    """The Customer aggregate written with eventsourcing."""

    @staticmethod
    def create_id(customer_id: str, **_: Any) -> UUID:
        return uuid5(_IDS, f"customer-{customer_id}")

    @event("Registered")
    def __init__(self, customer_id: str, name: str, address: str) -> None:
        self.customer_id, self.name, self.address = customer_id, name, address
        self.deleted = False

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name

    @event("AddressChanged")
    def move(self, address: str) -> None:
        self.address = address

    @event("Deleted")
    def delete(self) -> None:
        self.deleted = True


class EsOrder(Aggregate):
    """The Order aggregate written with eventsourcing."""

    @staticmethod
    def create_id(order_id: str, **_: Any) -> UUID:
        return uuid5(_IDS, f"order-{order_id}")

    @event("Placed")
    def __init__(
        self, order_id: str, customer_id: str, product: str, quantity: int, unit_price: Decimal
    ) -> None:
        self.order_id, self.customer_id, self.product = order_id, customer_id, product
        self.quantity, self.unit_price, self.status = quantity, unit_price, d.OPEN

    @event("Shipped")
    def ship(self) -> None:
        self.status = d.SHIPPED

    @event("Cancelled")
    def cancel(self, reason: str) -> None:
        self.status = d.CANCELLED


class Rejected(Exception):
    """A peer command broke a rule."""


class Shop(Application):  # type: ignore[type-arg]
    """The peer's command handlers: load, decide, save (one transaction per command)."""

    def rename_customer(self, customer_id: str, name: str) -> None:
        customer = self._live_customer(customer_id)
        if not name.strip() or name == customer.name:
            raise Rejected(f"cannot rename {customer_id} to {name!r}")
        customer.rename(name)
        self.save(customer)

    def place_order(self, command: d.PlaceOrder) -> None:
        self._live_customer(command.customer_id)
        if command.quantity <= 0 or command.unit_price <= 0:
            raise Rejected(f"bad order {command}")
        order = EsOrder(
            order_id=command.order_id,
            customer_id=command.customer_id,
            product=command.product,
            quantity=command.quantity,
            unit_price=command.unit_price,
        )
        self.save(order)  # an existing order id clashes on (originator_id, version) 1

    def ship_order(self, order_id: str) -> None:
        order: EsOrder = self.repository.get(EsOrder.create_id(order_id))
        if order.status != d.OPEN:
            raise Rejected(f"order {order_id} is {order.status}")
        order.ship()
        self.save(order)

    def delete_customer(self, customer_id: str, order_ids: list[str]) -> None:
        """Delete the customer and cancel its open orders, in one transaction."""
        customer = self._live_customer(customer_id)
        customer.delete()
        orders = [self.repository.get(EsOrder.create_id(o)) for o in order_ids]
        for order in orders:
            if order.status == d.OPEN:
                order.cancel(reason=f"customer {customer_id!r} was deleted")
        self.save(customer, *orders)

    def _live_customer(self, customer_id: str) -> EsCustomer:
        customer: EsCustomer = self.repository.get(EsCustomer.create_id(customer_id))
        if customer.deleted:
            raise Rejected(f"customer {customer_id} is deleted")
        return customer

    def handle(self, command: d.Command) -> None:
        match command:
            case d.RenameCustomer():
                self.rename_customer(command.customer_id, command.name)
            case d.PlaceOrder():
                self.place_order(command)
            case d.ShipOrder():
                self.ship_order(command.order_id)
            case _:
                raise TypeError(f"the peer does not handle {command}")


def peer_environment(kind: str, folder: Path) -> dict[str, str]:
    if kind == peers.SQLITE:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(folder / "eventsourcing.sqlite"),
        }
    return peers.environment(kind, folder)


HISTORY_SQL = """
SELECT stream_type, event_type, payload
FROM (
    SELECT 0 AS log, * FROM read_parquet($customer) WHERE position <= $customer_upto
    UNION ALL
    SELECT 1 AS log, * FROM read_parquet($order) WHERE position <= $order_upto
)
WHERE stream_id IN (SELECT unnest($streams))
ORDER BY recorded_at, log, position
"""


def peer_with_history(
    ctx: Context, kind: str, lab: Lab, cut: dict[str, int], streams: list[str]
) -> tuple[Shop, Path]:
    """A peer application holding as many events as the lab held at `cut` (positions per log).

    The streams the commands touch get their real history from the lab, replayed through the
    aggregates; the rest is the workload's customer streams, stored with the recorder (fast), so
    the peer's tables and indexes are as big as the lab's logs.
    """
    folder = ctx.folder(f"services-es-{kind}")
    app = Shop(env=peer_environment(kind, folder))
    total = sum(cut.values())
    with Stopwatch() as watch:
        for batch in replayed(lab, cut, streams):
            app.save(*batch)
        stored = app.recorder.max_notification_id() or 0
        filler = (total - stored) // workload.STREAM_LENGTH * workload.STREAM_LENGTH
        for start in range(0, filler, FILL_BATCH):
            app.recorder.insert_events(peers.stored_events(start, min(FILL_BATCH, filler - start)))
    ctx.info(
        f"peer es-{kind}: the touched streams' {stored:,} events replayed through the "
        f"aggregates and {filler:,} workload events stored, in {watch.seconds:.1f} s (untimed)"
    )
    return app, folder


def replayed(lab: Lab, cut: dict[str, int], streams: list[str]) -> Iterator[list[Aggregate]]:
    """The streams' events replayed into peer aggregates, in batches to save."""
    params: dict[str, Any] = {
        "streams": streams,
        "customer": lab.customer_log.file_paths(),
        "order": lab.order_log.file_paths(),
        "customer_upto": cut[d.CUSTOMER_SERVICE],
        "order_upto": cut[d.ORDER_SERVICE],
    }
    con = duckdb.connect()
    reader = con.sql(HISTORY_SQL, params=params).to_arrow_reader(REPLAY_BATCH)
    customers: dict[str, EsCustomer] = {}
    orders: dict[str, EsOrder] = {}
    for batch in reader:
        touched: dict[int, Aggregate] = {}
        columns = batch.to_pydict()
        for event_type, payload in zip(columns["event_type"], columns["payload"], strict=True):
            e = d.event_from_payload(event_type, json.loads(payload))
            aggregate: Aggregate
            match e:
                case d.CustomerRegistered():
                    aggregate = customers[e.customer_id] = EsCustomer(
                        customer_id=e.customer_id, name=e.name, address=e.address
                    )
                case d.CustomerRenamed():
                    aggregate = customers[e.customer_id]
                    aggregate.rename(e.name)
                case d.CustomerAddressChanged():
                    aggregate = customers[e.customer_id]
                    aggregate.move(e.address)
                case d.CustomerDeleted():
                    aggregate = customers[e.customer_id]
                    aggregate.delete()
                case d.OrderPlaced():
                    aggregate = orders[e.order_id] = EsOrder(
                        order_id=e.order_id,
                        customer_id=e.customer_id,
                        product=e.product,
                        quantity=e.quantity,
                        unit_price=e.unit_price,
                    )
                case d.OrderShipped():
                    aggregate = orders[e.order_id]
                    aggregate.ship()
                case d.OrderCancelled():
                    aggregate = orders[e.order_id]
                    aggregate.cancel(e.reason)
                case _:
                    continue
            touched[id(aggregate)] = aggregate
        yield list(touched.values())
    con.close()


# --- 2. one command end to end -----------------------------------------------------------------


def send(ctx: Context) -> None:
    """p50/p90/p99 of lab.send(command) on the demo lab, and of the peer doing the same."""
    count = settings(ctx)["sends"]
    lab = open_lab(ctx)
    cut = {d.CUSTOMER_SERVICE: lab.customer_log.position, d.ORDER_SERVICE: lab.order_log.position}
    events = sum(cut.values())
    ctx.say(
        f"\n2. lab.send(command) with {events:,} events in the logs: {count:,} commands "
        "(rename / place order / ship), after the first of each service and "
        f"{WARMUP} more, untimed"
    )
    warmup, timed = commands(lab, count)
    first = {}
    for command in warmup[:2]:
        with Stopwatch() as watch:
            result = lab.send(command)
        assert result.accepted, result
        first[d.SERVICE_OF_COMMAND[type(command)]] = watch.seconds
    ctx.info(
        "first command after Lab.open (folds the service's whole log into its cache): "
        + ", ".join(f"{name} service {s:.2f} s" for name, s in first.items())
    )
    ctx.report(
        Figure(
            key="services.send.first",
            label="first command after Lab.open (order service)",
            value=first[d.ORDER_SERVICE],
            unit="s",
            higher_is_better=False,
            note=f"customer service {first[d.CUSTOMER_SERVICE]:.2f} s",
        )
    )
    for command in warmup[2:]:
        assert lab.send(command).accepted
    seconds, cpu, seconds_outside, appending = [], [], [], timed_appends(lab)
    with ctx.profiled("send"):
        for command in timed:
            appending[0] = 0.0
            began, began_cpu = time.perf_counter(), time.process_time()
            result = lab.send(command)
            seconds.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
            if not result.accepted:
                raise AssertionError(f"{command} was not accepted: {result}")
            seconds_outside.append(seconds[-1] - appending[0])
    by_kind = {
        kind: percentiles([s for s, c in zip(seconds, timed, strict=True) if type(c) is kind])[50]
        for kind in (d.RenameCustomer, d.PlaceOrder, d.ShipOrder)
    }
    ctx.info(
        "cqrs_lab p50 by command: "
        + ", ".join(f"{k.__name__} {v:.2f} ms" for k, v in by_kind.items())
        + f"; CPU time per send p50 {percentiles(cpu)[50]:.2f} ms; outside EventLog.append "
        + f"p50 {percentiles(seconds_outside)[50]:.3f} ms"
    )
    samples = {"cqrs_lab": seconds}
    for kind in (peers.SQLITE, peers.POPO):
        samples[f"es-{kind}-app"] = peer_sends(ctx, kind, lab, cut, warmup, timed)
    label = f"lab.send, {events:,} events in the logs"
    report_latencies(ctx, "services.send", label, samples, SEND_TARGET_MS)


def timed_appends(lab: Lab) -> list[float]:
    """Make both logs of `lab` add the seconds each append takes to the returned cell."""
    cell = [0.0]
    for log in (lab.customer_log, lab.order_log):
        append = log.append

        def timed(*args: Any, _append: Any = append, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return _append(*args, **kwargs)
            finally:
                cell[0] += time.perf_counter() - began

        log.append = timed  # type: ignore[method-assign]
    return cell


def commands(lab: Lab, count: int) -> tuple[list[d.Command], list[d.Command]]:
    """Warm-up and timed commands: rename, place, ship in turn, on the lab's live entities.

    The first two warm-up commands touch one service each (a rename, then a shipment).
    """
    rng = random.Random(SEED)
    total = count + WARMUP + 2
    live = [row[0] for row in lab.con.execute(LIVE_CUSTOMERS).fetchall()]
    open_orders = [row[0] for row in lab.con.execute(OPEN_ORDERS).fetchall()]
    per_kind = total // 3 + 2
    if len(live) < per_kind or len(open_orders) < per_kind:
        raise AssertionError(f"the demo lab has too few live customers or open orders for {count}")
    renamed, shipped = rng.sample(live, per_kind), rng.sample(open_orders, per_kind)
    products = list(demo.PRODUCTS.items())
    made: list[d.Command] = [
        d.RenameCustomer(customer_id=renamed.pop(), name="Warm Up"),
        d.ShipOrder(order_id=shipped.pop()),
    ]
    for k in range(total - 2):
        if k % 3 == 0:
            made.append(d.RenameCustomer(customer_id=renamed.pop(), name=f"Bench Name {k}"))
        elif k % 3 == 1:
            product, price = rng.choice(products)
            made.append(
                d.PlaceOrder(
                    order_id=f"o-bench-{k}",
                    customer_id=rng.choice(live),
                    product=product,
                    quantity=rng.randint(1, 5),
                    unit_price=price,
                )
            )
        else:
            made.append(d.ShipOrder(order_id=shipped.pop()))
    return made[: WARMUP + 2], made[WARMUP + 2 :]


def touched_streams(sent: list[d.Command]) -> list[str]:
    """The aggregate streams the commands load: their customer and order streams."""
    streams = set()
    for command in sent:
        streams.add(d.stream_id_of(command))
        if isinstance(command, d.PlaceOrder):
            streams.add(f"customer-{command.customer_id}")
    return sorted(streams)


LIVE_CUSTOMERS = "SELECT customer_id FROM customers WHERE status = 'active' ORDER BY customer_id"
OPEN_ORDERS = "SELECT order_id FROM orders WHERE status = 'open' ORDER BY order_id"


def peer_sends(
    ctx: Context,
    kind: str,
    lab: Lab,
    cut: dict[str, int],
    warmup: list[d.Command],
    timed: list[d.Command],
) -> list[float]:
    """The same commands handled by the peer application (load, decide, save)."""
    app, folder = peer_with_history(ctx, kind, lab, cut, touched_streams([*warmup, *timed]))
    for command in warmup:
        app.handle(command)
    seconds = []
    for command in timed:
        began = time.perf_counter()
        app.handle(command)
        seconds.append(time.perf_counter() - began)
    app.close()
    ctx.discard(folder)
    return seconds


# --- 3. the deletion cascade ------------------------------------------------------------------


def cascade(ctx: Context) -> None:
    """lab.sync() after DeleteCustomer of a customer with 1,000 orders (100 shipped)."""
    lab = open_lab(ctx)
    ctx.say(
        f"\n3. Cascade: DeleteCustomer of a customer with {CASCADE_ORDERS:,} orders "
        f"({CASCADE_SHIPPED} shipped), then lab.sync() timed ({CASCADES} runs)"
    )
    seconds = []
    with ctx.profiled("cascade"):
        for run in range(CASCADES):
            customer = prepare_cascade(lab, f"bench-cascade-{run}")
            lab.send(d.DeleteCustomer(customer_id=customer))
            with Stopwatch() as watch:
                report = lab.sync()
            seconds.append(watch.seconds)
            check_cascade(lab, report.delivery, customer)
    customer = prepare_cascade(lab, f"bench-cascade-{CASCADES}")
    lab.send(d.DeleteCustomer(customer_id=customer))
    with Stopwatch() as delivering:
        delivery = deliver(lab.subscription, lab.order)
    with Stopwatch() as catching_up:
        lab.read.catch_up()
    check_cascade(lab, delivery, customer)
    ctx.info(
        f"lab.sync() runs: {', '.join(f'{s:.3f}' for s in seconds)} s; one more split: "
        f"delivery (policy, {CASCADE_ORDERS - CASCADE_SHIPPED} cancellations + "
        f"{CASCADE_SHIPPED} refusals + replica in one commit) {delivering.seconds * 1e3:.0f} ms, "
        f"read-model catch-up {catching_up.seconds * 1e3:.0f} ms"
    )
    peer = {f"es-{kind}-app": peer_cascade(ctx, kind) for kind in (peers.SQLITE, peers.POPO)}
    ctx.report(
        Figure(
            key="services.cascade.seconds",
            label=f"cascade: delete a customer with {power(CASCADE_ORDERS)} orders, lab.sync()",
            value=sorted(seconds)[len(seconds) // 2],
            unit="s",
            target=CASCADE_TARGET_S,
            higher_is_better=False,
            peers=peer,
            note="peers: delete + cancel in one save, no messaging or read models",
        )
    )


def prepare_cascade(lab: Lab, customer: str) -> str:
    """A registered, synced customer with CASCADE_ORDERS orders, the first ones shipped."""
    lab.send(d.RegisterCustomer(customer_id=customer, name="Cascade Test", address="1 Loop Rd"))
    lab.sync()
    orders = [f"o-{customer}-{i}" for i in range(CASCADE_ORDERS)]
    placed = lab.send_many(
        [
            d.PlaceOrder(
                order_id=order,
                customer_id=customer,
                product="Pen",
                quantity=1,
                unit_price=Decimal("1.20"),
            )
            for order in orders
        ]
    )
    shipped = lab.send_many([d.ShipOrder(order_id=order) for order in orders[:CASCADE_SHIPPED]])
    if not all(result.accepted for result in (*placed, *shipped)):
        raise AssertionError(f"could not prepare the cascade of {customer}")
    lab.sync()
    return customer


def check_cascade(lab: Lab, delivery: Any, customer: str) -> None:
    counts = dict(
        lab.con.execute(
            "SELECT status, count(*) FROM orders WHERE customer_id = $c GROUP BY 1", {"c": customer}
        ).fetchall()
    )
    expected = {d.CANCELLED: CASCADE_ORDERS - CASCADE_SHIPPED, d.SHIPPED: CASCADE_SHIPPED}
    if counts != expected or delivery.count("rejected") != CASCADE_SHIPPED:
        raise AssertionError(f"cascade of {customer}: orders {counts}, delivery {delivery}")


def peer_cascade(ctx: Context, kind: str) -> float:
    """The peer deleting a customer and cancelling its 1,000 orders (median of CASCADES)."""
    folder = ctx.folder(f"services-es-{kind}-cascade")
    app = Shop(env=peer_environment(kind, folder))
    seconds = []
    for run in range(CASCADES):
        customer = f"bench-cascade-{run}"
        app.save(EsCustomer(customer_id=customer, name="Cascade Test", address="1 Loop Rd"))
        orders = [f"o-{customer}-{i}" for i in range(CASCADE_ORDERS)]
        placed = [
            EsOrder(
                order_id=o, customer_id=customer, product="Pen", quantity=1, unit_price=Decimal(1)
            )
            for o in orders
        ]
        for order in placed[:CASCADE_SHIPPED]:
            order.ship()
        app.save(*placed)
        with Stopwatch() as watch:
            app.delete_customer(customer, orders)
        seconds.append(watch.seconds)
    app.close()
    ctx.discard(folder)
    return sorted(seconds)[len(seconds) // 2]


PARTS: dict[str, Callable[[Context], None]] = {
    "demo": demo_part,
    "send": send,
    "cascade": cascade,
}
