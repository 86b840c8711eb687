"""Cascades between the services: what deleting, renaming and moving a customer does to orders,
re-delivery, and a consumer killed with SIGKILL in the middle of a cascade."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from labkit import delivery_lag, new_lab, payload, place, register, reopen

from cqrs_lab import domain as d
from cqrs_lab.eventlog import EventLog
from cqrs_lab.lab import Lab
from cqrs_lab.messaging import Subscription, deliver, derived_id
from cqrs_lab.services import Envelope

# --- deleting a customer --------------------------------------------------------------------------


def _shop(path: Path) -> tuple[Lab, str]:
    """c1 with o1, o2 open, o3 shipped, o4 cancelled; c2 with o5 open; then c1 deleted, unsynced."""
    lab = new_lab(path)
    lab.send_many([register("c1", "Ada"), register("c2", "Bob")])
    lab.sync()
    lab.send_many(
        [
            place("o1", "c1"),
            place("o2", "c1"),
            place("o3", "c1"),
            place("o4", "c1"),
            place("o5", "c2"),
            d.ShipOrder(order_id="o3"),
            d.CancelOrder(order_id="o4", reason="changed my mind"),
        ]
    )
    deleted = lab.send(d.DeleteCustomer(customer_id="c1"), command_id="cmd-delete-c1")
    assert deleted.accepted
    return lab, deleted.command_id


def _order_events(lab: Lab, order_id: str) -> list[str]:
    return [e.event_type for e in lab.order_log.read(stream_id=f"order-{order_id}")]


def _rejections(lab: Lab) -> list[Any]:
    return [e for e in lab.order_log.read() if e.event_type == "CommandRejected"]


def test_deleting_a_customer_cancels_their_open_orders_after_sync(tmp_path: Path):
    lab, root = _shop(tmp_path / "lab")
    assert _order_events(lab, "o1") == ["OrderPlaced"]  # not before sync: eventually consistent

    lab.sync()

    [deleted] = lab.customer_log.read(stream_id="customer-c1")[-1:]
    assert deleted.event_type == "CustomerDeleted"
    for order_id in ("o1", "o2"):
        events = lab.order_log.read(stream_id=f"order-{order_id}")
        assert [e.event_type for e in events] == ["OrderPlaced", "OrderCancelled"]
        cancelled = events[-1]
        assert cancelled.correlation_id == root
        assert cancelled.causation_id == deleted.event_id
        assert cancelled.actor == "order-service"
        assert "'c1' was deleted" in payload(cancelled)["reason"]
        assert lab.order.states[f"order-{order_id}"].status == d.CANCELLED


def test_a_shipped_order_of_a_deleted_customer_is_a_recorded_failure_not_a_crash(tmp_path: Path):
    lab, root = _shop(tmp_path / "lab")

    report = lab.sync()

    assert _order_events(lab, "o3") == ["OrderPlaced", "OrderShipped"]
    assert lab.order.states["order-o3"].status == d.SHIPPED
    [rejection] = _rejections(lab)
    assert payload(rejection)["command_type"] == "CancelOrder"
    assert payload(rejection)["command"]["order_id"] == "o3"
    assert "shipped" in payload(rejection)["reason"]
    assert rejection.correlation_id == root
    assert rejection.causation_id == lab.customer_log.read()[-1].event_id
    assert report.delivery.count("rejected") == 1
    assert "1 rejected" in str(report)


def test_a_cancelled_order_of_a_deleted_customer_is_left_alone(tmp_path: Path):
    lab, _ = _shop(tmp_path / "lab")
    before = lab.order_log.read(stream_id="order-o4")

    lab.sync()

    assert lab.order_log.read(stream_id="order-o4") == before
    assert all(payload(r)["command"]["order_id"] != "o4" for r in _rejections(lab))


def test_orders_of_other_customers_are_untouched_by_a_deletion(tmp_path: Path):
    lab, root = _shop(tmp_path / "lab")

    lab.sync()

    assert _order_events(lab, "o5") == ["OrderPlaced"]
    assert lab.order.states["order-o5"].status == d.OPEN
    assert not lab.order.replica("c2").deleted
    touched = {e.stream_id for e in lab.order_log.read() if e.correlation_id == root}
    assert touched == {
        "order-o1",
        "order-o2",
        "replica-customer-c1",
        next(e.stream_id for e in _rejections(lab)),
    }


def test_a_cascade_is_one_commit_holding_the_cancellations_and_the_replica_update(tmp_path: Path):
    lab, root = _shop(tmp_path / "lab")
    before = lab.order_log.committed_position()

    lab.sync()

    cascade = lab.order_log.read(after=before)
    assert [e.event_type for e in cascade] == [
        "OrderCancelled",
        "OrderCancelled",
        "CommandRejected",
        "CustomerReplicated",
    ]
    assert {e.recorded_at for e in cascade} == {cascade[0].recorded_at}
    assert {e.correlation_id for e in cascade} == {root}
    assert lab.order.replica("c1").deleted


def test_an_order_placed_before_the_deletion_reached_the_order_service_is_cancelled_too(
    tmp_path: Path,
):
    lab, _ = _shop(tmp_path / "lab")
    late = lab.send(place("o6", "c1"))  # the Order service does not know of the deletion yet
    assert late.accepted

    lab.sync()

    assert _order_events(lab, "o6") == ["OrderPlaced", "OrderCancelled"]


def test_an_order_for_a_customer_known_as_deleted_is_rejected(tmp_path: Path):
    lab, _ = _shop(tmp_path / "lab")
    lab.sync()

    result = lab.send(place("o7", "c1"))

    assert result.status == "rejected"
    assert "customer 'c1' is deleted" in result.reason
    assert lab.order_log.read(stream_id="order-o7") == []


def test_renames_and_moves_reach_the_order_services_replica_after_sync(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1", "Ada", "1 Loop Rd"))
    lab.sync()
    rename = lab.send(d.RenameCustomer(customer_id="c1", name="Ada Lovelace"))
    lab.send(d.ChangeCustomerAddress(customer_id="c1", address="9 Far Lane"))
    assert lab.order.replica("c1").name == "Ada"  # not yet: the replica is behind

    lab.sync()

    assert lab.order.replica("c1") == d.Customer(
        customer_id="c1", name="Ada Lovelace", address="9 Far Lane", deleted=False
    )
    replicas = lab.order_log.read(stream_id="replica-customer-c1")
    assert [e.event_type for e in replicas] == ["CustomerReplicated"] * 3
    assert replicas[1].correlation_id == rename.command_id
    assert replicas[1].causation_id == rename.events[0].event_id
    assert payload(replicas[-1])["source_position"] == 3
    with reopen(tmp_path / "lab") as again:
        again.order.refresh()
        assert again.order.replica("c1") == lab.order.replica("c1")


def test_a_lab_opened_again_answers_replica_and_orders_from_its_log(tmp_path: Path):
    """`lab.order.replica()` and `lab.order.orders()` are public questions to the Order service;
    on a lab just opened they must answer from the log, not from an empty cache."""
    path = tmp_path / "lab"
    lab, _ = _shop(path)
    lab.sync()
    lab.close()

    with reopen(path) as again:
        replica = again.order.replica("c1")
        assert replica is not None, "the Order service forgot customer c1"
        assert replica.deleted
        assert [o.order_id for o in again.order.orders("c1")] == ["o1", "o2", "o3", "o4"]


def test_the_cascades_of_customers_deleted_together_are_one_commit_in_source_order(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send_many([register("c1"), register("c2")])
    lab.sync()
    lab.send_many([place("o1", "c1"), place("o2", "c2")])
    lab.send_many([d.DeleteCustomer(customer_id="c1"), d.DeleteCustomer(customer_id="c2")])
    before = lab.order_log.committed_position()

    lab.sync()

    delivered = lab.order_log.read(after=before)
    assert [(e.event_type, e.stream_id) for e in delivered] == [
        ("OrderCancelled", "order-o1"),
        ("CustomerReplicated", "replica-customer-c1"),
        ("OrderCancelled", "order-o2"),
        ("CustomerReplicated", "replica-customer-c2"),
    ]
    assert len({e.recorded_at for e in delivered}) == 1  # the clock is read once per commit
    assert len({e.correlation_id for e in delivered}) == 2  # each cascade traces to its deletion


def _envelope(command: d.Command, command_id: str) -> Envelope:
    return Envelope(
        command=command,
        command_id=command_id,
        correlation_id=command_id,
        causation_id=command_id,
        actor="test",
    )


def test_commands_given_to_a_delivery_are_decided_after_it_in_its_commit(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))  # customer log position 1
    lab.send(register("c2"))  # position 2: after `upto`, so not delivered
    orders = [_envelope(place("o1", "c1"), "cmd-o1"), _envelope(place("o2", "c2"), "cmd-o2")]

    report = deliver(lab.subscription, lab.order, upto=1, then=orders)

    assert report.delivered == 1 and lab.subscription.checkpoint == 1
    assert [r.status for r in report.then_results] == ["accepted", "rejected"]
    assert "'c2' is unknown" in report.then_results[1].reason
    assert [r.status for r in report.results] == ["accepted"]  # the replica update of c1
    written = lab.order_log.read()
    assert [e.event_type for e in written] == [
        "CustomerReplicated",
        "OrderPlaced",
        "CommandRejected",
    ]
    assert len({e.recorded_at for e in written}) == 1
    assert delivery_lag(lab) == 1


def test_commands_given_to_a_delivery_with_nothing_pending_are_still_handled(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))
    lab.sync()

    report = deliver(lab.subscription, lab.order, then=[_envelope(place("o1", "c1"), "cmd-o1")])

    assert report.delivered == 0 and report.results == []
    assert [r.status for r in report.then_results] == ["accepted"]
    assert lab.order.states["order-o1"].status == d.OPEN


# --- delivered twice ------------------------------------------------------------------------------


def test_a_message_delivered_twice_changes_nothing(tmp_path: Path):
    lab, _ = _shop(tmp_path / "lab")
    lab.sync()
    position = lab.order_log.committed_position()
    customer_events = lab.customer_log.committed_position()

    lab.subscription.advance(0)
    assert delivery_lag(lab) == customer_events
    report = lab.sync()

    assert lab.order_log.committed_position() == position
    assert report.delivery.delivered == customer_events
    # every replica update is a duplicate; so is the cancel of the shipped order (o3)
    assert report.delivery.count("duplicate") == customer_events + 1
    assert report.delivery.count("accepted") == report.delivery.count("rejected") == 0
    assert f"{customer_events + 1} duplicates skipped" in str(report)
    assert delivery_lag(lab) == 0


def test_a_message_delivered_again_to_a_lab_opened_afresh_changes_nothing(tmp_path: Path):
    path = tmp_path / "lab"
    lab, _ = _shop(path)
    lab.sync()
    position = lab.order_log.committed_position()
    lab.close()

    with reopen(path) as again:
        again.subscription.advance(0)
        report = again.sync()
        assert again.order_log.committed_position() == position
        assert report.delivery.count("accepted") == 0
        assert report.delivery.count("duplicate") > 0
        assert again.order_log.verify().ok


class _Killed(BaseException):
    """Stands in for the process dying: nothing below catches a BaseException."""


def test_a_crash_between_the_cascade_commit_and_the_checkpoint_does_not_cancel_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "lab"
    lab, _ = _shop(path)
    checkpoint = lab.subscription.checkpoint
    assert checkpoint < lab.customer_log.committed_position()

    def die(self: Subscription, position: int) -> None:
        raise _Killed

    monkeypatch.setattr(Subscription, "advance", die)
    with pytest.raises(_Killed):
        lab.sync()
    monkeypatch.undo()
    assert lab.subscription.checkpoint == checkpoint  # effects committed, checkpoint not moved
    assert _order_events(lab, "o1") == ["OrderPlaced", "OrderCancelled"]
    position = lab.order_log.committed_position()
    lab.close()

    with reopen(path) as again:
        report = again.sync()
        assert again.order_log.committed_position() == position
        assert report.delivery.count("accepted") == 0
        assert _order_events(again, "o1") == ["OrderPlaced", "OrderCancelled"]
        assert len(_rejections(again)) == 1
        assert delivery_lag(again) == 0


def test_a_cascaded_command_id_is_derived_from_the_event_that_caused_it(tmp_path: Path):
    lab, _ = _shop(tmp_path / "lab")
    lab.sync()
    deleted = lab.customer_log.read()[-1]

    [cancel_o1] = [e for e in lab.order_log.read(stream_id="order-o1") if e.version == 2]

    assert cancel_o1.command_id == derived_id(deleted, "cancel", "o1")
    assert cancel_o1.command_id != derived_id(deleted, "cancel", "o2")


# --- the consumer killed mid-cascade --------------------------------------------------------------

CUSTOMERS, ORDERS_EACH, SHIP_EVERY = 20, 50, 7
KILLS = 10
# The consumer process wires the Order service and its subscription as `Lab` does (without the
# read models, which a consumer does not need). It loads its modules (reading Parquet pulls in
# pyarrow.dataset and pandas), says so, and waits for a line on stdin: the next consumer loads
# while the current one runs, so a restart costs little more than opening the logs.
CONSUMER = """
import sys
from pathlib import Path
import pyarrow.dataset, pandas
from cqrs_lab.eventlog import EventLog
from cqrs_lab.messaging import Subscription, deliver
from cqrs_lab.services import OrderService

print("loaded", flush=True)
sys.stdin.readline()
root = Path(sys.argv[1])
orders = OrderService(EventLog.open(root / "order"))
subscription = Subscription(EventLog.open(root / "customer"), root / "order" / "subscriptions",
                            "customer-events")
orders.refresh()
print("ready", flush=True)
deliver(subscription, orders, batch_size=1)
print("done", flush=True)
"""


def _big_shop(path: Path) -> Lab:
    lab = new_lab(path)
    lab.send_many([register(f"c{c}", f"Customer {c}") for c in range(CUSTOMERS)])
    lab.sync()
    orders = [(f"c{c}-o{o}", f"c{c}") for c in range(CUSTOMERS) for o in range(ORDERS_EACH)]
    lab.send_many([place(order_id, customer_id) for order_id, customer_id in orders])
    lab.send_many(
        [d.ShipOrder(order_id=o) for i, (o, _) in enumerate(orders) if i % SHIP_EVERY == 0]
    )
    lab.send_many([d.DeleteCustomer(customer_id=f"c{c}") for c in range(CUSTOMERS)])
    return lab


def _checkpoint(path: Path) -> int:
    text = (path / "order" / "subscriptions" / "customer-events.checkpoint").read_text()
    return int(text.strip() or 0)


def _replicated_position(path: Path) -> int:
    """The last Customer-log position whose cascade is committed in the order log."""
    with EventLog.open(path / "order") as log:
        events = log.read()
    return max(payload(e)["source_position"] for e in events if e.stream_type == "CustomerReplica")


def _spawn_consumer(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _kill_mid_cascade(
    child: subprocess.Popen[str], path: Path, rng: random.Random, pace: float
) -> tuple[str, float]:
    """Let the consumer finish 0 or 1 cascades, then SIGKILL it a random fraction of a cascade
    later. Pacing by progress (not wall time) spreads the kills over the whole delivery however
    fast the machine is. Returns what happened and how long one cascade takes."""
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "loaded"
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ready"
        started = _checkpoint(path)
        began, target = time.monotonic(), started + rng.randint(0, 1)
        while _checkpoint(path) < target and child.poll() is None:
            time.sleep(0.001)
        if target > started and _checkpoint(path) >= target:
            pace = time.monotonic() - began
        time.sleep(rng.uniform(0, 1.5 * pace))
        if child.poll() is None:  # it may have finished (and been reaped by poll) already
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()
    finally:
        child.kill()
        child.wait()
    return ("done" if "done" in rest else "killed"), pace


@pytest.mark.slow
def test_a_consumer_killed_mid_cascade_and_restarted_cancels_every_order_exactly_once(
    tmp_path: Path,
):
    seed = int(os.environ.get("CASCADE_CRASH_SEED", random.randrange(2**32)))
    print(f"CASCADE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    path = tmp_path / "lab"
    lab = _big_shop(path)
    assert lab.subscription.path == path / "order" / "subscriptions" / "customer-events.checkpoint"
    lab.close()

    checkpoints, outcomes, pace = [_checkpoint(path)], [], 0.05
    waiting = _spawn_consumer(path)
    try:
        for _ in range(KILLS):
            child, waiting = waiting, _spawn_consumer(path)
            outcome, pace = _kill_mid_cascade(child, path, rng, pace)
            checkpoints.append(_checkpoint(path))
            committed_ahead = _replicated_position(path) > checkpoints[-1]  # killed pre-advance
            outcomes.append("committed, checkpoint behind" if committed_ahead else outcome)
    finally:
        waiting.kill()
        waiting.wait()
    assert checkpoints == sorted(checkpoints), f"the checkpoint went back: {checkpoints}"

    with reopen(path, seed=8) as lab:
        lab.sync()
        lab.order.refresh()  # the children may have done everything: fold what they wrote
        _assert_every_order_cancelled_exactly_once(lab)
        assert delivery_lag(lab) == 0
        assert lab.customer_log.verify().ok
        assert lab.order_log.verify().ok
    print(f"checkpoints: {checkpoints}; outcomes: {Counter(outcomes)}")


def _assert_every_order_cancelled_exactly_once(lab: Lab) -> None:
    events = lab.events(service="order")
    orders = {
        f"c{c}-o{o}": c * ORDERS_EACH + o for c in range(CUSTOMERS) for o in range(ORDERS_EACH)
    }
    shipped = {order_id for order_id, i in orders.items() if i % SHIP_EVERY == 0}
    per_stream = events[events.stream_type == "Order"].groupby("stream_id").event_type.apply(list)
    for order_id in orders:
        expected = ["OrderPlaced", "OrderShipped" if order_id in shipped else "OrderCancelled"]
        assert per_stream[f"order-{order_id}"] == expected, order_id
    rejections = events[events.event_type == "CommandRejected"].payload.map(json.loads)
    rejected = Counter(r["command"]["order_id"] for r in rejections)
    assert rejected == Counter(shipped)  # exactly one recorded failure per shipped order
    cancels = events[events.event_type.isin(["OrderCancelled", "CommandRejected"])]
    assert cancels.command_id.is_unique
    assert len(events[events.event_type == "OrderCancelled"]) == len(orders) - len(shipped)
    for c in range(CUSTOMERS):
        assert lab.order.replica(f"c{c}").deleted


# --- a big cascade --------------------------------------------------------------------------------


def test_deleting_a_customer_with_a_thousand_orders_cancels_them_all_in_one_commit(
    tmp_path: Path,
):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))
    lab.sync()
    lab.send_many([place(f"o{i}", "c1") for i in range(1000)])
    deleted = lab.send(d.DeleteCustomer(customer_id="c1"))
    before = lab.order_log.committed_position()

    report = lab.sync()

    assert report.delivery.count("accepted") == 1001  # 1,000 cancels and the replica update
    cascade = lab.events(service="order", correlation_id=deleted.command_id)
    cancelled = cascade[cascade.event_type == "OrderCancelled"]
    assert len(cancelled) == 1000
    assert cancelled.stream_id.is_unique
    assert set(cancelled.stream_id) == {f"order-o{i}" for i in range(1000)}
    assert list(cascade.position) == list(range(before + 1, before + 1002))
    assert cascade.recorded_at.nunique() == 1
    first, last = before + 1, before + 1001
    assert (lab.order_log.events_dir / f"{first:012d}-{last:012d}.parquet").is_file()
    assert all(o.status == d.CANCELLED for o in lab.order.orders("c1"))
