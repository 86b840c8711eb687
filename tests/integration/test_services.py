"""The Customer and Order services through `Lab.send`: results, failure events, dedupe, the state
cache, concurrency between processes, and the Order service's own view of customers."""

from __future__ import annotations

import shutil
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from labkit import delivery_lag, files_of, new_lab, payload, place, register, reopen, spy_on_reads

from cqrs_lab import domain as d
from cqrs_lab import eventlog
from cqrs_lab.errors import ConcurrencyError
from cqrs_lab.eventlog import EventLog
from cqrs_lab.lab import Lab
from cqrs_lab.services import MAX_ATTEMPTS

# --- a command, end to end ------------------------------------------------------------------------


def test_an_accepted_command_returns_its_recorded_events_and_updates_the_state(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    result = lab.send(register("c1", "Ada", "1 Loop Rd"), actor="alice")

    assert result.status == "accepted"
    assert result.accepted
    assert result.reason == ""
    [event] = result.events
    assert (event.event_type, event.stream_id, event.stream_type) == (
        "CustomerRegistered",
        "customer-c1",
        "Customer",
    )
    assert (event.position, event.version) == (1, 1)
    assert payload(event) == {"customer_id": "c1", "name": "Ada", "address": "1 Loop Rd"}
    assert lab.customer_log.read() == [event]
    assert lab.customer.states["customer-c1"] == d.Customer(
        customer_id="c1", name="Ada", address="1 Loop Rd", deleted=False
    )


def test_a_second_command_on_the_same_customer_gets_the_next_version(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1", "Ada"))
    result = lab.send(d.RenameCustomer(customer_id="c1", name="Ada Lovelace"))

    [event] = result.events
    assert (event.event_type, event.position, event.version) == ("CustomerRenamed", 2, 2)
    assert lab.customer.states["customer-c1"].name == "Ada Lovelace"
    with reopen(tmp_path / "lab") as again:
        again.customer.refresh()
        assert again.customer.states["customer-c1"] == lab.customer.states["customer-c1"]


def test_every_event_of_a_root_command_carries_its_id_as_correlation_and_causation(
    tmp_path: Path,
):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))
    lab.sync()
    results = lab.send_many(
        [place("o1", "c1"), d.ShipOrder(order_id="o1")],
        actor="warehouse",
        command_ids=["cmd-place", "cmd-ship"],
    )

    for result, command_id in zip(results, ["cmd-place", "cmd-ship"], strict=True):
        assert result.command_id == command_id
        [event] = result.events
        assert event.command_id == event.correlation_id == event.causation_id == command_id
        assert event.actor == "warehouse"
    stored = lab.order_log.read(stream_id="order-o1")
    assert [(e.command_id, e.actor) for e in stored] == [
        ("cmd-place", "warehouse"),
        ("cmd-ship", "warehouse"),
    ]


def test_a_generated_command_id_is_unique_per_command(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    first = lab.send(register("c1"))
    second = lab.send(register("c2"))

    assert first.command_id and second.command_id
    assert first.command_id != second.command_id
    assert first.events[0].event_id != second.events[0].event_id
    assert first.events[0].command_id == first.command_id


# --- rejections are results and recorded facts ----------------------------------------------------


def _lab_with_history(path: Path) -> Lab:
    """c1 live, c2 deleted; o1 open, o2 shipped, o3 cancelled (all of c1); everything synced."""
    lab = new_lab(path)
    lab.send_many([register("c1", "Ada", "1 Loop Rd"), register("c2", "Bob", "2 Loop Rd")])
    lab.sync()
    lab.send_many(
        [
            place("o1", "c1"),
            place("o2", "c1"),
            place("o3", "c1"),
            d.ShipOrder(order_id="o2"),
            d.CancelOrder(order_id="o3", reason="changed my mind"),
        ]
    )
    lab.send(d.DeleteCustomer(customer_id="c2"))
    lab.sync()
    return lab


REJECTIONS: list[tuple[Any, str, str]] = [
    (register(""), "customer-", "is blank"),
    (register("c1"), "customer-c1", "already registered"),
    (register("c9", name="  "), "customer-c9", "non-blank name"),
    (register("c9", address=""), "customer-c9", "non-blank address"),
    (d.RenameCustomer(customer_id="c9", name="X"), "customer-c9", "not registered"),
    (d.RenameCustomer(customer_id="c2", name="X"), "customer-c2", "is deleted"),
    (d.RenameCustomer(customer_id="c1", name=" "), "customer-c1", "blank name"),
    (d.RenameCustomer(customer_id="c1", name="Ada"), "customer-c1", "already named"),
    (d.ChangeCustomerAddress(customer_id="c9", address="X"), "customer-c9", "not registered"),
    (d.ChangeCustomerAddress(customer_id="c2", address="X"), "customer-c2", "is deleted"),
    (d.ChangeCustomerAddress(customer_id="c1", address=""), "customer-c1", "blank address"),
    (
        d.ChangeCustomerAddress(customer_id="c1", address="1 Loop Rd"),
        "customer-c1",
        "already lives at",
    ),
    (d.DeleteCustomer(customer_id="c9"), "customer-c9", "not registered"),
    (d.DeleteCustomer(customer_id="c2"), "customer-c2", "is deleted"),
    (place("", "c1"), "order-", "is blank"),
    (place("o1", "c1"), "order-o1", "already exists"),
    (replace(place("o9", "c1"), product=""), "order-o9", "needs a product"),
    (place("o9", "c1", quantity=0), "order-o9", "positive integer quantity"),
    (replace(place("o9", "c1"), quantity=True), "order-o9", "positive integer quantity"),
    (place("o9", "c1", price="0"), "order-o9", "positive Decimal unit price"),
    (replace(place("o9", "c1"), unit_price=Decimal("NaN")), "order-o9", "positive Decimal"),
    (replace(place("o9", "c1"), unit_price=9.99), "order-o9", "positive Decimal"),
    (place("o9", "c9"), "order-o9", "unknown to the Order service"),
    (place("o9", "c2"), "order-o9", "is deleted"),
    (d.ShipOrder(order_id="o9"), "order-o9", "does not exist"),
    (d.ShipOrder(order_id="o2"), "order-o2", "already shipped"),
    (d.ShipOrder(order_id="o3"), "order-o3", "cancelled and cannot be shipped"),
    (d.CancelOrder(order_id="o9", reason="x"), "order-o9", "does not exist"),
    (d.CancelOrder(order_id="o2", reason="x"), "order-o2", "shipped and cannot be cancelled"),
    (d.CancelOrder(order_id="o3", reason="x"), "order-o3", "already cancelled"),
    (d.CancelOrder(order_id="o1", reason=" "), "order-o1", "non-blank reason"),
]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One lab with some history, built once; each test works on its own copy."""
    path = tmp_path_factory.mktemp("history") / "lab"
    _lab_with_history(path).close()
    return path


@pytest.mark.parametrize(
    ("command", "stream_id", "words"),
    REJECTIONS,
    ids=[f"{type(c).__name__}-{words}" for c, _, words in REJECTIONS],
)
def test_a_broken_rule_is_returned_and_recorded_as_a_rejection_leaving_the_aggregate_alone(
    tmp_path: Path, history: Path, command: Any, stream_id: str, words: str
):
    shutil.copytree(history, tmp_path / "lab")
    lab = reopen(tmp_path / "lab", seed=5)
    service = d.SERVICE_OF_COMMAND[type(command)]
    log = lab.customer_log if service == "customer" else lab.order_log
    own = lab.customer if service == "customer" else lab.order
    own.refresh()
    before_stream = log.read(stream_id=stream_id)
    before_state = own.states.get(stream_id)
    before_position = log.committed_position()

    result = lab.send(command, actor="mallory", command_id="cmd-bad")

    assert result.status == "rejected"
    assert not result.accepted
    assert words in result.reason
    named = stream_id.split("-", 1)[1]
    assert repr(named) in result.reason  # the reason names the offending id
    [event] = result.events
    assert log.read(after=before_position) == [event]
    assert (event.event_type, event.stream_type) == ("CommandRejected", "Rejection")
    assert (event.stream_id, event.version) == ("rejection-cmd-bad", 1)
    assert event.actor == "mallory"
    assert event.command_id == event.correlation_id == event.causation_id == "cmd-bad"
    assert payload(event) == {
        "command_type": type(command).__name__,
        "command": d.command_to_payload(command),
        "reason": result.reason,
    }
    assert log.read(stream_id=stream_id) == before_stream
    assert own.states.get(stream_id) == before_state
    with reopen(tmp_path / "lab") as again:  # a fresh fold agrees: the rejection is not state
        service_again = again.customer if service == "customer" else again.order
        service_again.refresh()
        assert service_again.states.get(stream_id) == before_state


def test_a_rejection_goes_to_the_log_of_the_service_that_owns_the_command(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(d.ShipOrder(order_id="o1"))
    lab.send(d.DeleteCustomer(customer_id="c1"))

    assert [e.event_type for e in lab.order_log.read()] == ["CommandRejected"]
    assert [e.event_type for e in lab.customer_log.read()] == ["CommandRejected"]
    assert payload(lab.order_log.read()[0])["command_type"] == "ShipOrder"
    assert payload(lab.customer_log.read()[0])["command_type"] == "DeleteCustomer"


# --- the same command twice -----------------------------------------------------------------------


def test_sending_the_same_command_id_twice_records_it_once(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    first = lab.send(register("c1"), command_id="cmd-1")
    position = lab.customer_log.committed_position()
    second = lab.send(register("c1"), command_id="cmd-1")

    assert first.status == "accepted"
    assert second.status == "duplicate"
    assert second.events == ()
    assert second.command_id == "cmd-1"
    assert lab.customer_log.committed_position() == position
    assert "duplicate" in str(second)


def test_a_duplicate_is_a_duplicate_even_if_the_command_differs(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1", "Ada"), command_id="cmd-1")
    again = lab.send(d.RenameCustomer(customer_id="c1", name="Bea"), command_id="cmd-1")

    assert again.status == "duplicate"
    assert lab.customer.states["customer-c1"].name == "Ada"
    assert len(lab.customer_log.read()) == 1


def test_a_rejected_command_sent_again_is_a_duplicate_not_a_second_rejection(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    assert lab.send(d.DeleteCustomer(customer_id="c9"), command_id="cmd-1").status == "rejected"
    assert lab.send(d.DeleteCustomer(customer_id="c9"), command_id="cmd-1").status == "duplicate"
    assert len(lab.customer_log.read()) == 1


def test_the_same_command_id_twice_in_one_batch_is_handled_once(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    results = lab.send_many([register("c1"), register("c2")], command_ids=["cmd-1", "cmd-1"])

    assert [r.status for r in results] == ["accepted", "duplicate"]
    assert [e.stream_id for e in lab.customer_log.read()] == ["customer-c1"]


def test_a_command_id_is_remembered_by_a_lab_opened_again(tmp_path: Path):
    with new_lab(tmp_path / "lab") as lab:
        lab.send(register("c1"), command_id="cmd-1")
        lab.send(d.DeleteCustomer(customer_id="c9"), command_id="cmd-2")  # a rejection
    before = files_of(tmp_path / "lab")

    with reopen(tmp_path / "lab") as again:
        assert again.send(register("c1"), command_id="cmd-1").status == "duplicate"
        assert again.send(d.DeleteCustomer(customer_id="c9"), command_id="cmd-2").status == (
            "duplicate"
        )
        assert again.customer_log.committed_position() == 2
    after = files_of(tmp_path / "lab")
    assert {k: v for k, v in after.items() if "LOCK" not in k and not k.endswith(".lock")} == {
        k: v for k, v in before.items() if "LOCK" not in k and not k.endswith(".lock")
    }


# --- the state cache ------------------------------------------------------------------------------


def test_a_command_after_warm_up_reads_no_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    lab = new_lab(tmp_path / "lab")
    lab.send_many([register(f"c{i}") for i in range(50)])
    lab.send(d.RenameCustomer(customer_id="c1", name="Warm"))  # warm-up
    spy = spy_on_reads(monkeypatch)

    for i in range(5):
        result = lab.send(d.RenameCustomer(customer_id=f"c{i + 2}", name=f"New {i}"))
        assert result.accepted

    reads = [(m, kw, who) for m, kw, who in spy.of(lab.customer_log) if m in ("read", "scan")]
    assert reads == []


def test_a_command_after_another_process_wrote_reads_only_the_new_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = new_lab(tmp_path / "lab")
    lab.send_many([register(f"c{i}") for i in range(50)])
    lab.send(d.RenameCustomer(customer_id="c1", name="Warm"))  # warm-up: position 51
    with reopen(tmp_path / "lab") as other:
        other.send(d.RenameCustomer(customer_id="c2", name="Elsewhere"))  # position 52
    spy = spy_on_reads(monkeypatch)
    files_read: list[str] = []
    read_file = eventlog._read_file

    def spy_read_file(path: Path, columns: Any) -> Any:
        files_read.append(path.name)
        return read_file(path, columns)

    monkeypatch.setattr(eventlog, "_read_file", spy_read_file)

    result = lab.send(d.RenameCustomer(customer_id="c3", name="Here"))

    assert result.events[0].position == 53
    assert files_read == ["000000000052-000000000052.parquet"]
    reads = [(m, kw) for m, kw, _ in spy.of(lab.customer_log) if m in ("read", "scan")]
    assert reads
    assert all(kw.get("after") == 51 for _, kw in reads), reads
    assert lab.customer.states["customer-c2"].name == "Elsewhere"  # the tail was folded in


# --- two processes on one lab ---------------------------------------------------------------------


def test_interleaved_commands_from_two_labs_on_one_folder_both_land_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "lab"
    first = new_lab(path)
    first.send(register("c1", "Ada", "1 Loop Rd"))
    second = reopen(path)
    second.customer.refresh()
    first_log_append = first.customer_log.append
    attempts: list[int] = []

    def append_after_the_other_process(events: Any, *, expected: Any) -> Any:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:  # between our decision and our append, the other lab commits
            moved = second.send(d.ChangeCustomerAddress(customer_id="c1", address="9 Far Lane"))
            assert moved.events[0].version == 2
        return first_log_append(events, expected=expected)

    monkeypatch.setattr(first.customer_log, "append", append_after_the_other_process)
    renamed = first.send(d.RenameCustomer(customer_id="c1", name="Ada Lovelace"))

    assert renamed.status == "accepted"
    assert len(attempts) == 2  # one conflict, then a refresh and a successful retry
    assert renamed.events[0].version == 3
    with reopen(path, seed=3) as third:
        stream = third.customer_log.read(stream_id="customer-c1")
        assert [e.version for e in stream] == [1, 2, 3]
        assert [e.event_type for e in stream] == [
            "CustomerRegistered",
            "CustomerAddressChanged",
            "CustomerRenamed",
        ]
        third.customer.refresh()
        assert third.customer.states["customer-c1"] == d.Customer(
            customer_id="c1", name="Ada Lovelace", address="9 Far Lane", deleted=False
        )
        assert third.customer_log.verify().ok
    first.close()
    second.close()


def _lab_where_another_process_registers_c2_just_before_our_append(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> Lab:
    """`one` renames c1; between its refresh and its append another lab registers c2 (another
    stream, so no conflict). Returns `one`, whose cache must now know c2."""
    one = new_lab(path)
    one.send(register("c1", "Ada"))
    two = reopen(path)
    real_append = one.customer_log.append

    def append_after_the_other_process(events: Any, *, expected: Any) -> Any:
        if two.customer_log.committed_position() == 1:
            assert two.send(register("c2", "Bob")).accepted
        return real_append(events, expected=expected)

    monkeypatch.setattr(one.customer_log, "append", append_after_the_other_process)
    renamed = one.send(d.RenameCustomer(customer_id="c1", name="Ada Lovelace"))
    monkeypatch.undo()
    two.close()
    assert renamed.accepted
    assert renamed.events[0].position == 3  # c2 was registered at position 2, in between
    return one


def test_an_event_another_process_appended_just_before_ours_is_folded_into_our_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    one = _lab_where_another_process_registers_c2_just_before_our_append(
        tmp_path / "lab", monkeypatch
    )

    result = one.send(d.RenameCustomer(customer_id="c2", name="Bea"))

    assert result.status == "accepted", result.reason
    assert one.customer.states["customer-c2"].name == "Bea"


def test_a_stream_another_process_created_just_before_our_append_is_not_a_lasting_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    one = _lab_where_another_process_registers_c2_just_before_our_append(
        tmp_path / "lab", monkeypatch
    )

    result = one.send(register("c2", "Bob again"))  # must be a rejection, not ConcurrencyError

    assert result.status == "rejected"
    assert "already registered" in result.reason


def test_an_event_another_process_appended_just_after_ours_is_folded_by_our_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "lab"
    one = new_lab(path)
    one.send(register("c1"))
    two = reopen(path)
    append = one.customer_log.append

    def append_then_the_other_process_renames_c1(*args: Any, **kwargs: Any) -> Any:
        commit = append(*args, **kwargs)
        monkeypatch.setattr(one.customer_log, "append", append)  # only once
        assert two.send(d.RenameCustomer(customer_id="c1", name="Elsewhere")).accepted
        return commit

    monkeypatch.setattr(one.customer_log, "append", append_then_the_other_process_renames_c1)
    ours = one.send(register("c2"))  # position 2; the other's rename lands at 3 before we look
    renamed = one.send(d.RenameCustomer(customer_id="c1", name="Here"))

    assert ours.events[0].position == 2
    assert renamed.status == "accepted", renamed.reason
    stream = one.customer_log.read(stream_id="customer-c1")
    assert [payload(e).get("name") for e in stream] == ["Ada", "Elsewhere", "Here"]
    assert one.customer.states["customer-c1"].name == "Here"
    two.close()


def test_alternating_sends_from_two_labs_lose_no_update(tmp_path: Path):
    path = tmp_path / "lab"
    one = new_lab(path)
    one.send(register("c1"))
    two = reopen(path)
    for i in range(6):
        lab = one if i % 2 == 0 else two
        assert lab.send(d.RenameCustomer(customer_id="c1", name=f"name {i}")).accepted

    stream = one.customer_log.read(stream_id="customer-c1")
    assert [e.version for e in stream] == list(range(1, 8))
    assert [payload(e).get("name") for e in stream[1:]] == [f"name {i}" for i in range(6)]
    one.close()
    two.close()


def test_a_conflict_that_never_clears_is_retried_a_bounded_number_of_times_then_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))
    before = files_of(tmp_path / "lab" / "customer" / "events")
    calls: list[dict[str, Any]] = []

    def always_conflicting(self: EventLog, events: Any, *, expected: Any) -> Any:
        calls.append(dict(expected))
        raise ConcurrencyError("customer-c1", 1, 2)

    monkeypatch.setattr(EventLog, "append", always_conflicting)
    with pytest.raises(ConcurrencyError) as caught:
        lab.send(d.RenameCustomer(customer_id="c1", name="Never"))

    assert len(calls) == MAX_ATTEMPTS
    assert "customer-c1" in str(caught.value)
    assert any(f"{MAX_ATTEMPTS} attempts" in note for note in caught.value.__notes__)
    monkeypatch.undo()
    assert files_of(tmp_path / "lab" / "customer" / "events") == before
    assert lab.customer_log.committed_position() == 1
    assert lab.customer.states["customer-c1"].name == "Ada"


def test_an_order_placed_while_another_process_syncs_its_customers_deletion_is_not_left_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The Order service decides PlaceOrder on its replica; if a sync in another process deletes
    that customer (and cancels their orders) between the decision and the append, the order
    must not end up open for a deleted customer (rejected on retry, or cancelled)."""
    path = tmp_path / "lab"
    placer = new_lab(path)
    placer.send(register("c1"))
    placer.sync()
    placer.send(place("o1", "c1"))
    placer.send(d.DeleteCustomer(customer_id="c1"))  # not synced yet
    syncer = reopen(path)
    real_append = placer.order_log.append
    synced: list[str] = []

    def append_after_a_sync_elsewhere(events: Any, *, expected: Any) -> Any:
        if not synced:
            synced.append(str(syncer.sync()))
        return real_append(events, expected=expected)

    monkeypatch.setattr(placer.order_log, "append", append_after_a_sync_elsewhere)
    placer.send(place("o2", "c1"))
    placer.sync()

    with reopen(path, seed=3) as lab:
        lab.order.refresh()
        assert lab.order.replica("c1").deleted
        still_open = [o.order_id for o in lab.order.orders("c1") if o.status == d.OPEN]
        assert still_open == [], f"open orders of a deleted customer: {still_open}"
    placer.close()
    syncer.close()


def test_an_order_placed_while_a_deletion_cascade_is_being_committed_is_not_left_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A cascade decides which orders to cancel, then appends; an order another process places
    in between (for the customer being deleted) must be cancelled too, not stay open forever."""
    path = tmp_path / "lab"
    syncer = new_lab(path)
    syncer.send(register("c1"))
    syncer.sync()
    syncer.send(place("o1", "c1"))
    syncer.send(d.DeleteCustomer(customer_id="c1"))
    placer = reopen(path)
    real_append = syncer.order_log.append
    placed: list[str] = []

    def append_after_an_order_elsewhere(events: Any, *, expected: Any) -> Any:
        if not placed:
            placed.append(placer.send(place("o2", "c1")).status)
        return real_append(events, expected=expected)

    monkeypatch.setattr(syncer.order_log, "append", append_after_an_order_elsewhere)
    syncer.sync()
    monkeypatch.undo()
    syncer.sync()

    with reopen(path, seed=3) as lab:
        lab.order.refresh()
        statuses = {o.order_id: o.status for o in lab.order.orders("c1")}
        assert statuses.get("o1") == d.CANCELLED
        assert d.OPEN not in statuses.values(), f"orders of a deleted customer: {statuses}"
    placer.close()
    syncer.close()


# --- the Order service and the Customer store -----------------------------------------------------


def test_the_order_service_does_not_know_a_customer_until_sync(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))

    before = lab.send(place("o1", "c1"))
    assert before.status == "rejected"
    assert "'c1' is unknown to the Order service" in before.reason
    assert lab.order.replica("c1") is None

    lab.sync()
    after = lab.send(place("o2", "c1"))
    assert after.status == "accepted"
    assert lab.order.replica("c1") == d.Customer(
        customer_id="c1", name="Ada", address="1 Loop Rd", deleted=False
    )


def test_only_the_subscription_reads_the_customer_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = new_lab(tmp_path / "lab")
    assert lab.order.log is lab.order_log
    assert lab.order.log.path == tmp_path / "lab" / "order"
    assert lab.customer.log.path == tmp_path / "lab" / "customer"
    spy = spy_on_reads(monkeypatch)

    lab.send(register("c1"))
    lab.send(place("o0", "c1"))  # rejected: the Order service looks only at its own log
    lab.sync()
    lab.send_many([place(f"o{i}", "c1") for i in range(1, 4)])
    lab.send(d.RenameCustomer(customer_id="c1", name="Bea"))
    lab.send(d.DeleteCustomer(customer_id="c1"))
    lab.lag()
    lab.sync()
    lab.send(place("o9", "c1"))

    customer_readers = {who for _, _, who in spy.of(lab.customer_log)}
    order_readers = {who for _, _, who in spy.of(lab.order_log)}
    assert "Subscription" in customer_readers
    assert "OrderService" not in customer_readers, spy.of(lab.customer_log)
    assert "OrderService" in order_readers
    assert "CustomerService" not in order_readers
    subscription_reads = [kw for m, kw, who in spy.of(lab.customer_log) if m == "read"]
    assert subscription_reads
    assert all(kw.get("after") is not None for kw in subscription_reads)


# --- eventual consistency -------------------------------------------------------------------------


def test_lag_counts_the_customer_events_the_order_service_has_not_seen(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    assert delivery_lag(lab) == 0
    lab.send_many([register("c1"), register("c2")])
    lab.send(d.RenameCustomer(customer_id="c1", name="Bea"))
    lab.send(d.DeleteCustomer(customer_id="c9"))  # a rejection is a Customer event too
    assert delivery_lag(lab) == 4

    report = lab.sync()

    assert delivery_lag(lab) == 0
    assert (report.delivery.lag_before, report.delivery.lag_after) == (4, 0)
    assert report.delivery.delivered == 4
    text = str(report)
    assert text.splitlines()[0] == (
        "delivered 4 Customer events to the Order service; "
        "commands issued: 3 accepted, 0 rejected, 0 duplicates skipped"
    )
    assert "order service <- customer log: 4 -> 0" in text
    assert "0x" not in text
    assert repr(report) == text
    assert lab.order.replica("c1").name == "Bea"


def test_a_sync_with_nothing_pending_says_so(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))
    lab.sync()
    position = lab.order_log.committed_position()

    report = lab.sync()

    assert str(report).splitlines()[0] == (
        "delivered 0 Customer events to the Order service; "
        "commands issued: 0 accepted, 0 rejected, 0 duplicates skipped"
    )
    assert "order service <- customer log: 0 -> 0" in str(report)
    assert lab.order_log.committed_position() == position


def test_a_second_lab_sees_the_synced_replica_after_refresh(tmp_path: Path):
    path = tmp_path / "lab"
    lab = new_lab(path)
    lab.send(register("c1"))
    with reopen(path) as other:
        other.sync()
    assert delivery_lag(lab) == 0  # the checkpoint is on disk
    assert lab.send(place("o1", "c1")).accepted  # the order service folds the replica tail
