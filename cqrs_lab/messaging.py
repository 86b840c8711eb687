"""Messages between services: a subscription to another service's log, and the policies it drives.

The Customer service's log *is* the message channel: appending an event is publishing it, in one
atomic step (the article's answer to "write the database and publish the message"). The Order
service subscribes to it with a durable checkpoint, the last source position it fully handled.

Delivery is at-least-once: the checkpoint moves only after the effects are committed, so a crash
in between delivers the same events again. Effects are exactly-once all the same: every command a
policy issues has an id derived from the event that caused it (uuid5), and a service skips any
command id it has handled before. Everything one batch of delivered events causes (replica
updates, and cascades: cancel every order of a deleted customer, then update the replica) is
committed as ONE append, in source order, before the checkpoint moves once: a cascade is never
seen half done, and delivery costs one commit per batch however many customers were deleted.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cqrs_lab import domain as d
from cqrs_lab.eventlog import EventLog, RecordedEvent
from cqrs_lab.locking import FileLock
from cqrs_lab.services import DUPLICATE, Envelope, OrderService, ReplicateCustomer, SendResult

POLICY_ACTOR = "order-service"
_COMMAND_IDS = uuid.UUID("6f0c1c1e-5a53-4f2a-9a53-c0a1b2c3d4e5")  # namespace of derived ids


class Subscription:
    """A consumer's position in a source log, kept in a small file; one deliverer at a time."""

    def __init__(self, source: EventLog, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.source, self.name = source, name
        self.path = folder / f"{name}.checkpoint"
        self.lock = FileLock(folder / f"{name}.lock")

    def __repr__(self) -> str:
        return f"Subscription({self.name!r} to {str(self.source.path)!r}, at {self.checkpoint})"

    @property
    def checkpoint(self) -> int:
        """The last source position whose effects are committed (0: nothing yet)."""
        try:
            return int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def lag(self) -> int:
        """How many source events are not delivered yet."""
        return max(0, self.source.committed_position() - self.checkpoint)

    def pending(self, *, limit: int, upto: int | None = None) -> list[RecordedEvent]:
        """Up to `limit` source events after the checkpoint (none after `upto`), in order."""
        after = self.checkpoint
        last = after + limit if upto is None else min(after + limit, upto)
        return self.source.read(after=after, upto=last) if last > after else []

    def advance(self, position: int) -> None:
        """Move the checkpoint durably (temp file, fsync, atomic replace, fsync the folder)."""
        temp = self.path.with_suffix(".tmp")
        with open(temp, "w") as file:
            file.write(f"{position}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, self.path)  # only the lock holder writes it: replacing is safe here
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def derived_id(event: RecordedEvent, purpose: str, target: str = "") -> str:
    """The id of a command a policy issues because of `event`: the same on every re-delivery."""
    return uuid.uuid5(_COMMAND_IDS, f"{event.event_id}/{purpose}/{target}").hex


def _envelope(
    event: RecordedEvent, command: d.Command | ReplicateCustomer, purpose: str
) -> Envelope:
    target = getattr(command, "order_id", "")
    return Envelope(
        command=command,
        command_id=derived_id(event, purpose, target),
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
        actor=POLICY_ACTOR,
    )


def replicate_customer(orders: OrderService, event: RecordedEvent) -> list[Envelope]:
    """Any Customer event: update the Order service's replica of that customer."""
    source = d.event_from_log(event.event_type, event.data)
    assert isinstance(source, d.CUSTOMER_EVENTS)
    return [
        _envelope(
            event, ReplicateCustomer(source=source, source_position=event.position), "replica"
        )
    ]


def cancel_orders_of_deleted_customer(orders: OrderService, event: RecordedEvent) -> list[Envelope]:
    """CustomerDeleted: cancel each of the customer's orders not cancelled yet, then replicate.

    A shipped order cannot be cancelled: its CancelOrder is rejected and recorded as a failure.
    """
    customer_id = event.data["customer_id"]
    reason = f"customer {customer_id!r} was deleted"
    cancels = [
        _envelope(event, d.CancelOrder(order_id=order.order_id, reason=reason), "cancel")
        for order in orders.orders(customer_id)
        if order.status != d.CANCELLED
    ]
    return cancels + replicate_customer(orders, event)


# What the Order service does with each Customer event it receives.
POLICIES: dict[str, Callable[[OrderService, RecordedEvent], list[Envelope]]] = {
    "CustomerRegistered": replicate_customer,
    "CustomerRenamed": replicate_customer,
    "CustomerAddressChanged": replicate_customer,
    "CustomerDeleted": cancel_orders_of_deleted_customer,
}


def _issue(events: list[RecordedEvent], orders: OrderService) -> list[Envelope]:
    """The commands the policies issue for `events`, in source order (cascades included)."""
    issued: list[Envelope] = []
    for event in events:
        policy = POLICIES.get(event.event_type)
        if policy is not None:  # None: e.g. a rejected customer command, nothing to do here
            issued += policy(orders, event)
    return issued


def _settle(events: list[RecordedEvent], orders: OrderService) -> list[SendResult]:
    """Run the cascades of `events` again until they have nothing new to do.

    Between choosing the orders to cancel and committing the cascade, another process may place
    one more order (decided before it saw the deletion). Looking again after the commit finds it;
    once the replica says "deleted" no new order can be placed, so this ends.
    """
    cascading = [e for e in events if POLICIES.get(e.event_type) not in (None, replicate_customer)]
    results: list[SendResult] = []
    while cascading:
        orders.refresh()
        fresh = [e for e in _issue(cascading, orders) if e.command_id not in orders.handled]
        if not fresh:
            break
        results += orders.handle_batch(fresh)
    return results


@dataclass(slots=True)
class DeliveryReport:
    """What one delivery did: events delivered, commands issued and what became of them."""

    delivered: int = 0
    lag_before: int = 0
    lag_after: int = 0
    results: list[SendResult] = field(default_factory=list)
    then_results: list[SendResult] = field(default_factory=list)  # of `deliver(then=...)`

    def count(self, status: str) -> int:
        """How many issued commands ended with `status`."""
        return sum(result.status == status for result in self.results)


def deliver(
    subscription: Subscription,
    orders: OrderService,
    *,
    batch_size: int = 5_000,
    upto: int | None = None,
    then: Sequence[Envelope] = (),
) -> DeliveryReport:
    """Deliver the pending Customer events (up to position `upto`) to the Order service's policies.

    `then`: Order-service commands to handle after the delivery, in the last batch's commit, as if
    sent right after it (the demo's bulk path: one Order-service commit per round, not two).
    """
    report = DeliveryReport()
    with subscription.lock:
        report.lag_before = subscription.lag()
        while True:
            events = subscription.pending(limit=batch_size, upto=upto)
            last = len(events) < batch_size  # positions are gap-free: nothing more was pending
            _deliver_batch(events, orders, report, then if last else ())
            if events:
                subscription.advance(events[-1].position)
                report.delivered += len(events)
            if last:
                break
        report.lag_after = subscription.lag()
    return report


def _deliver_batch(
    events: list[RecordedEvent],
    orders: OrderService,
    report: DeliveryReport,
    then: Sequence[Envelope],
) -> None:
    """Every replica update and cascade of the batch (and `then`) in one commit: a cascade is
    never seen half done, and a round of the demo costs one commit, not two per deleted customer."""
    orders.refresh()
    issued = _issue(events, orders)
    if issued or then:
        results = orders.handle_batch([*issued, *then])  # re-deliveries come back as duplicates
        report.results += results[: len(issued)]
        report.then_results += results[len(issued) :]
    report.results += _settle(events, orders)


__all__ = ["DUPLICATE", "POLICIES", "DeliveryReport", "Subscription", "deliver", "derived_id"]
