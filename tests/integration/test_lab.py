"""The Lab facade: the events table, traces and their mermaid graphs, how results show in a
notebook, byte-for-byte determinism, and what bad input gets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from labkit import files_of, new_lab, payload, place, register, reopen

from cqrs_lab import domain as d
from cqrs_lab.errors import CqrsLabError, LogNotFoundError
from cqrs_lab.lab import Lab

DESIGN_COLUMNS = [
    "position",
    "stream_id",
    "stream_type",
    "version",
    "event_type",
    "schema_version",
    "payload",
    "recorded_at",
    "event_id",
    "command_id",
    "correlation_id",
    "causation_id",
    "actor",
    "hash",
]


def _shop(path: Path) -> tuple[Lab, str]:
    """Two customers, three orders (one shipped), c1 deleted and synced; returns the delete's id."""
    lab = new_lab(path)
    lab.send_many([register("c1", "Ada"), register("c2", "Bob")], actor="clerk")
    lab.sync()
    lab.send_many([place("o1", "c1"), place("o2", "c1"), place("o3", "c2")], actor="web")
    lab.send(d.ShipOrder(order_id="o2"), actor="warehouse")
    deleted = lab.send(d.DeleteCustomer(customer_id="c1"), actor="admin")
    lab.sync()
    return lab, deleted.command_id


# --- lab.events() ---------------------------------------------------------------------------------


def test_events_has_every_column_of_the_event_row_and_the_service(tmp_path: Path):
    lab, _ = _shop(tmp_path / "lab")

    events = lab.events()

    assert set(DESIGN_COLUMNS) | {"service"} <= set(events.columns)
    assert len(events) == lab.customer_log.committed_position() + lab.order_log.committed_position()
    assert set(events.service) == {"customer", "order"}


def test_events_rows_are_the_rows_of_the_logs(tmp_path: Path):
    lab, _ = _shop(tmp_path / "lab")

    events = lab.events()

    for service, log in (("customer", lab.customer_log), ("order", lab.order_log)):
        rows = events[events.service == service].sort_values("position")
        stored = log.read()
        assert list(rows.position) == [e.position for e in stored]
        assert list(rows.event_id) == [e.event_id for e in stored]
        assert list(rows.hash) == [e.hash for e in stored]
        assert list(rows.payload) == [e.payload for e in stored]
        assert list(rows.actor) == [e.actor for e in stored]
        assert [t.to_pydatetime() for t in rows.recorded_at] == [e.recorded_at for e in stored]


def test_events_are_oldest_first_and_in_position_order_within_each_service(tmp_path: Path):
    lab, _ = _shop(tmp_path / "lab")

    events = lab.events()

    assert events.recorded_at.is_monotonic_increasing
    for service in ("customer", "order"):
        assert events[events.service == service].position.is_monotonic_increasing
    # the log order of causes and effects: the deletion comes before the cancellations
    types = list(events.event_type)
    assert types.index("CustomerDeleted") < types.index("OrderCancelled")


def test_events_filters_by_service_stream_type_and_correlation(tmp_path: Path):
    lab, root = _shop(tmp_path / "lab")

    assert set(lab.events(service="order").service) == {"order"}
    assert len(lab.events(service="customer")) == lab.customer_log.committed_position()
    o1 = lab.events(stream_id="order-o1")
    assert list(o1.event_type) == ["OrderPlaced", "OrderCancelled"]
    assert list(o1.version) == [1, 2]
    cancelled = lab.events(event_type="OrderCancelled")
    assert list(cancelled.stream_id) == ["order-o1"]
    cascade = lab.events(correlation_id=root)
    assert set(cascade.correlation_id) == {root}
    assert set(cascade.service) == {"customer", "order"}
    both = lab.events(service="order", event_type="CommandRejected", correlation_id=root)
    assert len(both) == 1
    assert payload(both.iloc[0])["command"]["order_id"] == "o2"
    assert lab.events(stream_id="nope").empty
    assert list(lab.events(stream_id="nope").columns) == list(lab.events().columns)


def test_an_empty_lab_has_an_empty_events_table_with_the_columns(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")

    events = lab.events()

    assert isinstance(events, pd.DataFrame)
    assert events.empty
    assert set(DESIGN_COLUMNS) | {"service"} <= set(events.columns)
    assert lab.events(service="order", correlation_id="x").empty


def test_events_of_a_lab_with_only_customer_events_work_with_filters(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))

    assert list(lab.events().service) == ["customer"]
    assert lab.events(service="order").empty


# --- lab.trace() ----------------------------------------------------------------------------------


def test_a_trace_holds_every_event_of_the_cascade_across_both_services(tmp_path: Path):
    lab, root = _shop(tmp_path / "lab")

    trace = lab.trace(root)

    expected = sorted(
        (service, e.position)
        for service, log in (("customer", lab.customer_log), ("order", lab.order_log))
        for e in log.read()
        if e.correlation_id == root
    )
    assert sorted(zip(trace.table.service, trace.table.position, strict=True)) == expected
    assert list(trace.table.event_type) == [
        "CustomerDeleted",
        "OrderCancelled",
        "CommandRejected",
        "CustomerReplicated",
    ]
    assert trace.correlation_id == root


def _mermaid_graph(text: str) -> tuple[dict[str, str], list[str], set[tuple[str, str]]]:
    """Nodes (id -> label), root command node ids, and edges of a mermaid flowchart."""
    nodes = dict(re.findall(r'^\s+(e\d+)\["(.*)"\]$', text, re.MULTILINE))
    roots = re.findall(r"^\s+(c\d+)\(\[", text, re.MULTILINE)
    edges = set(re.findall(r"^\s+(\w+) --> (\w+)$", text, re.MULTILINE))
    return nodes, roots, edges


def test_a_trace_draws_one_node_per_event_and_an_edge_from_each_cause(tmp_path: Path):
    lab, root = _shop(tmp_path / "lab")
    trace = lab.trace(root)

    text = trace.mermaid()

    assert text.splitlines()[0] == "flowchart TD"
    nodes, roots, edges = _mermaid_graph(text)
    assert len(nodes) == len(trace.table)
    assert len(roots) == 1
    assert f"command {root[:8]}" in text
    node_of = {}  # event id -> node, matched by the label (service, type, stream, version)
    for row in trace.table.itertuples():
        label = f"{row.service}: {row.event_type}<br/>{row.stream_id} v{row.version}"
        if row.event_type == "CommandRejected":  # its stream is a command id: say what it refused
            command = json.loads(row.payload)["command"]
            label = f"{row.service}: {row.event_type}<br/>CancelOrder {command['order_id']}"
        [node] = [n for n, shown in nodes.items() if shown == label]
        node_of[row.event_id] = node
    node_of[root] = roots[0]
    expected = {
        (node_of[row.causation_id], node_of[row.event_id]) for row in trace.table.itertuples()
    }
    assert edges == expected
    deleted = trace.table[trace.table.event_type == "CustomerDeleted"].event_id.item()
    assert sum(cause == node_of[deleted] for cause, _ in edges) == 3  # cancel, reject, replica


def test_a_trace_shows_in_jupyter_as_mermaid_and_elsewhere_as_text(tmp_path: Path):
    lab, root = _shop(tmp_path / "lab")
    trace = lab.trace(root)

    bundle = trace._repr_mimebundle_()

    assert set(bundle) >= {"text/vnd.mermaid", "text/plain"}
    assert bundle["text/vnd.mermaid"] == trace.mermaid()
    assert bundle["text/plain"] == str(trace) == repr(trace)
    assert str(trace).startswith(f"Trace of {root}: 4 events")
    assert "0x" not in str(trace)
    assert "OrderCancelled" in str(trace)


def test_a_trace_of_an_unknown_correlation_id_is_empty(tmp_path: Path):
    lab, _ = _shop(tmp_path / "lab")

    trace = lab.trace("no-such-command")

    assert trace.table.empty
    assert "0 events" in str(trace)
    assert trace.mermaid() == "flowchart TD"


def test_the_trace_of_a_registration_shows_the_replica_it_caused(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    registered = lab.send(register("c1"))
    lab.sync()

    trace = lab.trace(registered.command_id)

    assert list(trace.table.event_type) == ["CustomerRegistered", "CustomerReplicated"]
    _, roots, edges = _mermaid_graph(trace.mermaid())
    assert edges == {(roots[0], "e0"), ("e0", "e1")}


# --- how a result shows ---------------------------------------------------------------------------


def test_an_accepted_result_shows_its_status_and_events_without_addresses(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    result = lab.send(register("c1", "Ada", "1 Loop Rd"))

    text = str(result)

    assert text == (
        "RegisterCustomer: accepted\n"
        '  #1 CustomerRegistered customer-c1 v1 {"address":"1 Loop Rd","customer_id":"c1",'
        '"name":"Ada"}'
    )
    assert repr(result) == text
    html = result._repr_html_()
    assert "accepted" in html
    assert "CustomerRegistered" in html and "customer-c1" in html
    assert "0x" not in text and "0x" not in html


def test_a_rejected_result_shows_the_reason_escaped_in_html(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    result = lab.send(d.ShipOrder(order_id="<o1>"))

    assert str(result).startswith("ShipOrder: rejected - order '<o1>' does not exist\n")
    assert "CommandRejected" in str(result)
    html = result._repr_html_()
    assert "rejected" in html
    assert "order &#x27;&lt;o1&gt;&#x27; does not exist" in html
    assert "<o1>" not in html
    assert "0x" not in html


def test_a_duplicate_result_says_so(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"), command_id="0123456789abcdef")
    result = lab.send(register("c1"), command_id="0123456789abcdef")

    assert str(result) == (
        "RegisterCustomer: duplicate of command 0123456789abcdef, already handled"
    )
    assert "duplicate" in result._repr_html_()
    assert "<table>" not in result._repr_html_()


def test_services_and_subscriptions_say_what_they_are(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")

    assert repr(lab.order) == f"OrderService({str(tmp_path / 'lab' / 'order')!r}, at position 0)"
    assert repr(lab.subscription).startswith("Subscription('customer-events' to ")
    assert "0x" not in repr(lab.customer) + repr(lab.subscription)


def test_results_show_the_same_in_two_identical_labs(tmp_path: Path):
    shown = []
    for name in ("one", "two"):
        lab = new_lab(tmp_path / name)
        results = [
            lab.send(register("c1")),
            lab.send(d.DeleteCustomer(customer_id="c9")),
            lab.send(place("o1", "c1")),
        ]
        shown.append([(str(r), r._repr_html_()) for r in results])
        lab.close()
    assert shown[0] == shown[1]


# --- determinism ----------------------------------------------------------------------------------


def _story(lab: Lab) -> None:
    lab.send_many([register("c1", "Ada"), register("c2", "Bob")])
    lab.sync()
    lab.send_many([place(f"o{i}", "c1" if i % 2 else "c2") for i in range(6)])
    lab.send(d.ShipOrder(order_id="o1"))
    lab.send(d.RenameCustomer(customer_id="c2", name="Bea"))
    lab.send(d.DeleteCustomer(customer_id="c1"))
    lab.send(d.DeleteCustomer(customer_id="c9"))
    lab.sync()


def test_two_labs_fed_the_same_commands_are_byte_identical(tmp_path: Path):
    for name in ("one", "two"):
        with new_lab(tmp_path / name) as lab:
            _story(lab)

    one, two = files_of(tmp_path / "one"), files_of(tmp_path / "two")
    assert sorted(one) == sorted(two)
    assert any(name.endswith(".parquet") for name in one)
    # A lock file holds its last holder's mark (pid and that lock's nonce), not lab data.
    locks = [name for name in one if name.endswith(("LOCK", ".lock"))]
    differing = [name for name in one if one[name] != two[name] and name not in locks]
    assert differing == []
    assert len(locks) >= 3  # both logs' and the subscription's


def test_two_labs_fed_the_same_commands_have_the_same_events_table(tmp_path: Path):
    tables = []
    for name in ("one", "two"):
        with new_lab(tmp_path / name) as lab:
            _story(lab)
            tables.append(lab.events())
    pd.testing.assert_frame_equal(tables[0], tables[1])


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (object(), "object"),
        ("RegisterCustomer", "RegisterCustomer"),
        (d.RegisterCustomer, "RegisterCustomer"),
        (d.CustomerRegistered(customer_id="c1", name="Ada", address="x"), "CustomerRegistered"),
        (None, "None"),
    ],
    ids=["object", "a string", "a command class", "an event", "None"],
)
def test_sending_something_that_is_not_a_command_is_refused_and_writes_nothing(
    tmp_path: Path, bad: object, named: str
):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c0"))
    before = files_of(tmp_path / "lab")

    with pytest.raises(d.InvalidCommandError, match=re.escape(named)):
        lab.send(bad)  # type: ignore[arg-type]

    assert files_of(tmp_path / "lab") == before


def test_a_batch_with_one_bad_command_writes_nothing_at_all(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    before = files_of(tmp_path / "lab")

    with pytest.raises(d.InvalidCommandError):
        lab.send_many([register("c1"), object()])  # type: ignore[list-item]

    assert files_of(tmp_path / "lab") == before
    assert lab.customer_log.committed_position() == 0


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (d.RegisterCustomer(customer_id=7, name="Ada", address="x"), "customer_id"),  # type: ignore[arg-type]
        (d.RegisterCustomer(customer_id="c1", name=None, address="x"), "name"),  # type: ignore[arg-type]
        (d.CancelOrder(order_id="o1", reason=3), "reason"),  # type: ignore[arg-type]
    ],
    ids=["int id", "None name", "int reason"],
)
def test_a_command_with_a_field_of_the_wrong_type_gets_a_clear_answer_not_a_crash(
    tmp_path: Path, command: d.Command, field: str
):
    """Like a non-Decimal price (a recorded rejection), a non-text text field must come back as
    InvalidCommandError naming the field (log untouched) or as a rejection naming the value."""
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c0"))
    lab.sync()
    lab.send(place("o1", "c0"))
    before = files_of(tmp_path / "lab")

    try:
        result = lab.send(command)
    except d.InvalidCommandError as error:
        assert field in str(error)
        assert files_of(tmp_path / "lab") == before
    else:
        assert result.status == "rejected"
        assert repr(getattr(command, field)) in result.reason


def test_opening_a_folder_without_a_lab_is_a_clear_error(tmp_path: Path):
    with pytest.raises(LogNotFoundError, match="no lab at"):
        Lab.open(tmp_path / "missing")
    (tmp_path / "half" / "customer").mkdir(parents=True)
    with pytest.raises(LogNotFoundError):
        Lab.open(tmp_path / "half")
    assert not (tmp_path / "missing").exists()


def test_creating_a_lab_where_one_exists_is_refused_and_changes_nothing(tmp_path: Path):
    with new_lab(tmp_path / "lab") as lab:
        lab.send(register("c1"))
    before = files_of(tmp_path / "lab")

    with pytest.raises(CqrsLabError, match="already holds a lab"):
        new_lab(tmp_path / "lab")

    assert files_of(tmp_path / "lab") == before
    with reopen(tmp_path / "lab") as again:
        assert again.customer_log.committed_position() == 1


def test_a_lab_can_be_created_in_an_existing_empty_folder(tmp_path: Path):
    (tmp_path / "lab").mkdir()
    with new_lab(tmp_path / "lab") as lab:
        assert lab.send(register("c1")).accepted
    with reopen(tmp_path / "lab") as again:
        assert again.events().event_type.tolist() == ["CustomerRegistered"]
