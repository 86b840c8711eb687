"""A realistic shop history, made through the real services: `cqrs-lab demo PATH`.

Customers register, rename and move; they place orders that get shipped or cancelled; some are
deleted (and the Order service cancels their open orders); some commands break rules and are
recorded as failures. Several actors work over months. Every choice comes from one seeded
`random.Random`, the clock and ids are seeded too: the same seed gives byte-identical logs.

Commands go in rounds, one append per service per round (the bulk path). The Customer service
handles the round's customer commands; then, in ONE Order-service commit, the previous round's
Customer events are delivered (replica updates and cascades, exactly as `Lab.sync()` would) and
the round's order commands handled after them, as if sent right after that sync. The
subscription's checkpoint moves once per round. The read models are left to catch up once, when
the lab is next opened or synced.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from pathlib import Path

from cqrs_lab import domain as d
from cqrs_lab.determinism import seeded_ids
from cqrs_lab.lab import Lab
from cqrs_lab.messaging import deliver
from cqrs_lab.progress import bar as progress_bar
from cqrs_lab.services import REJECTED, Envelope, cyclic_gc_paused

START = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
ROUNDS = 400  # about this many rounds, so times spread over about five months
SHOP, SUPPORT, WAREHOUSE = ("alice@shop", "bob@shop"), "carol@support", "dave@warehouse"
FIRST = (
    "Ada",
    "Alan",
    "Grace",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Ken",
    "Frances",
    "Niklaus",
)
LAST = (
    "Lovelace",
    "Turing",
    "Hopper",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Thompson",
    "Allen",
)
STREETS = ("Loop Rd", "Stack St", "Heap Ave", "Queue Ln", "Graph Way", "Tree Ct", "Byte Blvd")
PRODUCTS = {
    "Notebook": Decimal("4.50"),
    "Pen": Decimal("1.20"),
    "Backpack": Decimal("39.90"),
    "Desk lamp": Decimal("24.00"),
    "Headphones": Decimal("59.00"),
    "Coffee mug": Decimal("8.75"),
}
PRODUCT_NAMES = tuple(PRODUCTS)


class Pool:
    """A set you can draw from at random in O(1): a list, and each item's index in it."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, item: str) -> None:
        """Put an item in the pool."""
        self.index[item] = len(self.items)
        self.items.append(item)

    def remove(self, item: str) -> None:
        """Take an item out (the last one moves into its place)."""
        at, last = self.index.pop(item), self.items.pop()
        if last != item:
            self.items[at], self.index[last] = last, at

    def draw(self, rng: random.Random) -> str:
        """A random item."""
        return self.items[rng.randrange(len(self.items))]

    def __len__(self) -> int:
        return len(self.items)


class SteppingClock:
    """A clock the generator moves on by hand (the log reads it once per commit)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass(slots=True)
class Shop:
    """What the generator knows of the shop, to pick sensible targets for its commands."""

    rng: random.Random
    names: dict[str, str] = field(default_factory=dict)  # customer id -> current name
    customers: Pool = field(default_factory=Pool)  # live, and known to both services
    new_customers: list[str] = field(default_factory=list)  # registered, not yet synced
    open_orders: Pool = field(default_factory=Pool)
    orders_of: dict[str, list[str]] = field(default_factory=dict)  # customer id -> order ids
    closed_orders: list[str] = field(default_factory=list)
    registered: int = 0
    placed: int = 0

    def next_command(self, may_register: bool) -> tuple[d.Command, str]:
        """One command and its actor, drawn by weight from what the shop can do right now."""
        actions, cumulative = _CHOICES[bool(self.customers), may_register]
        # What `rng.choices(kinds, cum_weights=cumulative)` does, from the same one `random()`,
        # without its argument checks and one-item list (it ran once per command).
        at = bisect(cumulative, self.rng.random() * cumulative[-1], 0, len(cumulative) - 1)
        return actions[at](self)

    def _register(self) -> tuple[d.Command, str]:
        self.registered += 1
        customer_id = f"c-{self.registered}"
        name = f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"
        self.names[customer_id] = name
        self.new_customers.append(customer_id)
        return d.RegisterCustomer(
            customer_id=customer_id, name=name, address=self._address()
        ), SHOP[0]

    def _place(self) -> tuple[d.Command, str]:
        self.placed += 1
        product = self.rng.choice(PRODUCT_NAMES)
        command = d.PlaceOrder(
            order_id=f"o-{self.placed}",
            customer_id=self.customers.draw(self.rng),
            product=product,
            quantity=self.rng.randint(1, 5),
            unit_price=PRODUCTS[product],
        )
        self.open_orders.add(command.order_id)
        self.orders_of.setdefault(command.customer_id, []).append(command.order_id)
        return command, self.rng.choice(SHOP)

    def _ship(self) -> tuple[d.Command, str]:
        if not self.open_orders:
            return self._place()
        order_id = self.open_orders.draw(self.rng)
        self._close(order_id)
        return d.ShipOrder(order_id=order_id), WAREHOUSE

    def _cancel(self) -> tuple[d.Command, str]:
        if not self.open_orders:
            return self._place()
        order_id = self.open_orders.draw(self.rng)
        self._close(order_id)
        reason = self.rng.choice(("changed their mind", "out of stock", "payment failed"))
        return d.CancelOrder(order_id=order_id, reason=reason), SUPPORT

    def _rename(self) -> tuple[d.Command, str]:
        customer_id = self.customers.draw(self.rng)
        name = f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}-{self.rng.randint(2, 99)}"
        self.names[customer_id] = name
        return d.RenameCustomer(customer_id=customer_id, name=name), SUPPORT

    def _move(self) -> tuple[d.Command, str]:
        customer_id = self.customers.draw(self.rng)
        return d.ChangeCustomerAddress(customer_id=customer_id, address=self._address()), SUPPORT

    def _delete(self) -> tuple[d.Command, str]:
        customer_id = self.customers.draw(self.rng)
        self.customers.remove(customer_id)
        for order_id in self.orders_of.pop(customer_id, []):
            if order_id in self.open_orders.index:
                self._close(order_id)  # the cascade will cancel it
        return d.DeleteCustomer(customer_id=customer_id), SUPPORT

    def _mistake(self) -> tuple[d.Command, str]:
        """A command that breaks a rule, as people's commands sometimes do."""
        choice = self.rng.randrange(4)
        if choice == 0 and self.closed_orders:
            return d.ShipOrder(order_id=self.rng.choice(self.closed_orders)), WAREHOUSE
        if choice == 1 and self.customers:
            customer_id = self.customers.draw(self.rng)
            return d.RenameCustomer(customer_id=customer_id, name=self.names[customer_id]), SUPPORT
        if choice == 2:
            command = d.PlaceOrder(
                order_id=f"o-x{self.rng.randrange(10**9)}",
                customer_id="c-unknown",
                product="Pen",
                quantity=1,
                unit_price=PRODUCTS["Pen"],
            )
            return command, self.rng.choice(SHOP)
        return d.CancelOrder(
            order_id=f"o-missing-{self.rng.randrange(100)}", reason="typo"
        ), SUPPORT

    def _close(self, order_id: str) -> None:
        self.open_orders.remove(order_id)
        self.closed_orders.append(order_id)

    def _address(self) -> str:
        return f"{self.rng.randint(1, 250)} {self.rng.choice(STREETS)}"


# What each kind of command the shop draws does (the drawing is `Shop.next_command`).
ACTIONS: dict[str, Callable[[Shop], tuple[d.Command, str]]] = {
    "place": Shop._place,
    "ship": Shop._ship,
    "cancel": Shop._cancel,
    "rename": Shop._rename,
    "move": Shop._move,
    "delete": Shop._delete,
    "mistake": Shop._mistake,
    "register": Shop._register,
}


def _choices(
    weights: dict[str, int],
) -> tuple[list[Callable[[Shop], tuple[d.Command, str]]], list[float]]:
    kinds = [kind for kind, weight in weights.items() if weight] or ["mistake"]
    cumulative = [float(total) for total in accumulate(weights.get(kind, 1) for kind in kinds)]
    return [ACTIONS[kind] for kind in kinds], cumulative


# What the shop does, by weight; drawn from cumulative weights made once (a draw costs less).
WEIGHTS = {"place": 40, "ship": 22, "cancel": 4, "rename": 4, "move": 4, "delete": 1, "mistake": 3}
_CHOICES = {  # (any customer known to both services?, may register?) -> actions, cumulative weights
    (True, True): _choices({**WEIGHTS, "register": 14}),
    (True, False): _choices(WEIGHTS),
    (False, True): _choices({"register": 14}),
    (False, False): _choices({}),
}


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What the generator made."""

    path: Path
    customers: int
    orders: int
    events: int
    rejected: int

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.events} events ({self.customers} customers, {self.orders} orders, "
            f"{self.rejected} rejected commands)"
        )


def generate(
    path: str | Path,
    *,
    customers: int | None = None,
    events: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> DemoReport:
    """Build a new lab at `path` with a shop history of about `customers` or `events`.

    `progress`: show a bar (None: when someone watches a big run, see `progress.py`).
    """
    if customers is None and events is None:
        customers = 100
    target = events if events is not None else (customers or 0) * 12
    clock = SteppingClock(START)
    shop = Shop(random.Random(seed))
    batch = max(5, target // (ROUNDS * 2))
    rejected = 0
    with (
        Lab.create(path, clock=clock, ids=seeded_ids(seed)) as lab,
        progress_bar(target, desc="demo", show=progress) as bar,
        cyclic_gc_paused(),  # millions of long-lived objects and no cycles: see its docstring
    ):
        while (done := _event_count(lab)) < target:
            bar.update(done - bar.n)
            may_register = customers is None or shop.registered < customers
            rejected += _round(lab, [shop.next_command(may_register) for _ in range(batch)])
            clock.now += timedelta(minutes=shop.rng.randint(30, 720))
            for customer_id in shop.new_customers:  # usable once delivered: in the next round
                shop.customers.add(customer_id)
            shop.new_customers.clear()
        rejected += deliver(lab.subscription, lab.order).count(REJECTED)  # the last round's
        bar.update(_event_count(lab) - bar.n)
        for log in (lab.customer_log, lab.order_log):  # one file per round is slow to open
            log.compact(keep_replaced_for=0)  # a new lab: no query can hold the old files
        return DemoReport(Path(path), shop.registered, shop.placed, _event_count(lab), rejected)


def _round(lab: Lab, drawn: list[tuple[d.Command, str]]) -> int:
    """One round through the services (see the module docstring); returns how many commands
    the services rejected, the cascades' refusals included."""
    envelopes: dict[str, list[Envelope]] = {d.CUSTOMER_SERVICE: [], d.ORDER_SERVICE: []}
    for command, actor in drawn:
        command_id = lab.ids()  # a new lab and its own seeded ids: no id was used before
        envelope = Envelope(
            command=command,
            command_id=command_id,
            correlation_id=command_id,
            causation_id=command_id,
            actor=actor,
        )
        envelopes[d.SERVICE_OF_COMMAND[type(command)]].append(envelope)
    delivered = lab.customer_log.committed_position()  # the previous rounds' Customer events
    results = lab.customer.handle_batch(envelopes[d.CUSTOMER_SERVICE])
    report = deliver(lab.subscription, lab.order, upto=delivered, then=envelopes[d.ORDER_SERVICE])
    results += report.results + report.then_results
    return sum(result.status == REJECTED for result in results)


def _event_count(lab: Lab) -> int:
    return lab.customer.position + lab.order.position
