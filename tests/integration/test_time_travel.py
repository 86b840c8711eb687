"""Time travel: `lab.as_of(position=... | time=...)` folds the read models up to a consistent cut of
both services; `lab.history(stream_id)` shows one entity after each event; `lab.diff` lists what
changed between two points; `cqrs-lab sql --as-of-position/--as-of` does the same from a shell."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from readkit import READ_MODELS, assert_same_tables, new_lab, place, register

from cqrs_lab import domain as d
from cqrs_lab.cli import main
from cqrs_lab.errors import CqrsLabError
from cqrs_lab.lab import Lab
from cqrs_lab.readstore import QueryError
from cqrs_lab.timetravel import AsOf

MICROSECOND = timedelta(microseconds=1)
ORDER_STATUS = "SELECT order_id, status FROM orders ORDER BY order_id"
CUSTOMER_STATUS = "SELECT customer_id, name, status FROM customers ORDER BY customer_id"
# A cascade's cancellation whose customer is not deleted at the same cut: a torn cut.
TORN = """
SELECT o.order_id
FROM orders AS o
LEFT JOIN customers AS c USING (customer_id)
WHERE c.customer_id IS NULL
   OR (o.cancel_reason LIKE 'customer % was deleted' AND c.status <> 'deleted')
ORDER BY 1
"""


def story(path: Path) -> Lab:
    """Ada (o1, o2 open; o4 shipped) is renamed, then deleted: the cascade cancels o1 and o2.
    Afterwards Bob (o3) places o5."""
    lab = new_lab(path)
    lab.send_many([register("c1", "Ada"), register("c2", "Bob")])
    lab.sync()
    lab.send_many([place("o1", "c1"), place("o2", "c1", 2), place("o3", "c2"), place("o4", "c1")])
    lab.send(d.ShipOrder(order_id="o4"))
    lab.sync()
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
    lab.sync()
    lab.send(d.DeleteCustomer(customer_id="c1"))
    lab.sync()
    lab.send(place("o5", "c2", 5, "1.00"))
    lab.sync()
    return lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The story, told once for the module (these tests only look at it)."""
    lab = story(tmp_path_factory.mktemp("travel") / "lab")
    yield lab
    lab.close()


def event(lab: Lab, event_type: str, stream_id: str) -> tuple[int, datetime]:
    """The 1-based place of an event in `lab.events()` and when it was recorded."""
    events = lab.events()
    index = events.index[(events.event_type == event_type) & (events.stream_id == stream_id)]
    assert len(index) == 1
    return int(index[0]) + 1, events.recorded_at[index[0]].to_pydatetime()


def statuses(view: AsOf | Lab, query: str = ORDER_STATUS) -> dict[str, Any]:
    frame = view.sql(query)
    return dict(zip(frame.iloc[:, 0], frame.iloc[:, -1], strict=True))


def view_tables(view: AsOf) -> dict[str, Any]:
    return {name: view.store.table(name) for name in READ_MODELS}


# --- the deletion and its cascade, seen from the past ---------------------------------------------


def test_as_of_just_before_a_customers_deletion_their_orders_are_open(lab: Lab):
    _, deleted_at = event(lab, "CustomerDeleted", "customer-c1")

    view = lab.as_of(time=deleted_at - MICROSECOND)

    assert statuses(view) == {"o1": "open", "o2": "open", "o3": "open", "o4": "shipped"}
    assert statuses(view, CUSTOMER_STATUS) == {"c1": "active", "c2": "active"}
    assert view.sql("SELECT name FROM customers WHERE customer_id = 'c1'").name[0] == "Ada L"


def test_as_of_just_after_the_cascade_the_orders_are_cancelled_and_the_customer_deleted(lab: Lab):
    _, cascade_at = event(lab, "OrderCancelled", "order-o1")

    view = lab.as_of(time=cascade_at)

    assert statuses(view) == {"o1": "cancelled", "o2": "cancelled", "o3": "open", "o4": "shipped"}
    assert statuses(view, CUSTOMER_STATUS) == {"c1": "deleted", "c2": "active"}
    reasons = view.sql("SELECT DISTINCT cancel_reason FROM orders WHERE status = 'cancelled'")
    assert reasons.cancel_reason.tolist() == ["customer 'c1' was deleted"]


def test_by_position_the_deletion_comes_first_and_the_cascade_after_it(lab: Lab):
    deleted, _ = event(lab, "CustomerDeleted", "customer-c1")
    cancelled, _ = event(lab, "OrderCancelled", "order-o2")

    before, at, after = (lab.as_of(position=n) for n in (deleted - 1, deleted, cancelled))

    assert statuses(before, CUSTOMER_STATUS)["c1"] == "active"
    assert statuses(before) == {"o1": "open", "o2": "open", "o3": "open", "o4": "shipped"}
    assert statuses(at, CUSTOMER_STATUS)["c1"] == "deleted"  # the cause, not yet its effect
    assert statuses(at) == {"o1": "open", "o2": "open", "o3": "open", "o4": "shipped"}
    assert statuses(after) == {"o1": "cancelled", "o2": "cancelled", "o3": "open", "o4": "shipped"}


def test_between_the_deletion_and_the_cascade_the_past_shows_the_deletion_and_open_orders(
    lab: Lab,
):
    _, deleted_at = event(lab, "CustomerDeleted", "customer-c1")

    view = lab.as_of(time=deleted_at)

    assert statuses(view, CUSTOMER_STATUS)["c1"] == "deleted"
    assert statuses(view)["o1"] == "open"


def test_no_cut_shows_an_effect_without_its_cause(lab: Lab):
    times = sorted({t.to_pydatetime() for t in lab.events().recorded_at})
    cuts = [lab.as_of(position=n) for n in range(len(lab.events()) + 1)]
    cuts += [lab.as_of(time=t + delta) for t in times for delta in (-MICROSECOND, timedelta(0))]

    torn = {str(view): view.sql(TORN).order_id.tolist() for view in cuts}

    assert torn == {str(view): [] for view in cuts}


# --- the ends of history --------------------------------------------------------------------------


def test_as_of_the_whole_history_equals_the_live_read_models(lab: Lab):
    view = lab.as_of(position=len(lab.events()))

    assert_same_tables(view_tables(view), {n: lab.read.table(n) for n in READ_MODELS}, "as_of(N)")
    for name in READ_MODELS:
        pd.testing.assert_frame_equal(view.table(name), lab.read.table(name).to_pandas())
    summary = "SELECT * FROM customer_order_summary ORDER BY customer_id"
    pd.testing.assert_frame_equal(view.sql(summary), lab.sql(summary))
    everything = "SELECT service, position, event_id FROM events ORDER BY service, position"
    pd.testing.assert_frame_equal(view.sql(everything), lab.sql(everything))
    assert view.cut == {"customer": lab.customer_log.position, "order": lab.order_log.position}


def test_as_of_the_time_of_the_last_event_equals_the_live_read_models(lab: Lab):
    last = lab.events().recorded_at.max().to_pydatetime()

    view = lab.as_of(time=last)

    assert_same_tables(view_tables(view), {n: lab.read.table(n) for n in READ_MODELS}, "as_of(t)")


def test_as_of_position_zero_and_before_the_first_event_are_empty(lab: Lab):
    first = lab.events().recorded_at.min().to_pydatetime()

    for view in (lab.as_of(position=0), lab.as_of(time=first - MICROSECOND)):
        assert view.cut == {"customer": 0, "order": 0}
        for table in ("customers", "orders", "customer_order_summary", "events"):
            assert len(view.sql(f"SELECT * FROM {table}")) == 0, (view, table)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"position": 3, "time": datetime(2026, 1, 1)}],
    ids=["neither", "both"],
)
def test_as_of_needs_exactly_one_of_position_and_time(lab: Lab, arguments: dict[str, Any]):
    with pytest.raises(CqrsLabError, match="exactly one of position= or time="):
        lab.as_of(**arguments)


# --- positions and times --------------------------------------------------------------------------


def test_positions_step_through_the_lab_one_event_at_a_time_in_events_order(lab: Lab):
    events = lab.events()
    expected = {"customer": 0, "order": 0}

    for n, row in enumerate(events.itertuples(), start=1):
        expected[row.service] = row.position
        assert lab.as_of(position=n).cut == expected, f"position {n}: {row.event_type}"
    assert lab.as_of(position=len(events) + 10).cut == expected


def test_a_time_cut_equals_the_position_cut_after_the_last_event_recorded_by_then(lab: Lab):
    events = lab.events()
    times = [t.to_pydatetime() for t in events.recorded_at]
    boundaries = [n for n in range(1, len(times) + 1) if n == len(times) or times[n] > times[n - 1]]

    for n in boundaries:
        by_time, by_position = lab.as_of(time=times[n - 1]), lab.as_of(position=n)
        assert by_time.cut == by_position.cut, n
        assert_same_tables(view_tables(by_time), view_tables(by_position), f"cut {n}")
    assert len(boundaries) >= 8


def test_a_view_into_the_past_stays_put_when_the_lab_moves_on(tmp_path: Path, lab: Lab):
    shutil.copytree(lab.path, tmp_path / "lab")
    copy = Lab.open(tmp_path / "lab")
    view = copy.as_of(position=4)
    before = view_tables(view)
    orders_then = statuses(view)

    copy.send(d.CancelOrder(order_id="o3", reason="changed mind"))
    copy.send(register("c7", "Gus"))
    copy.sync()

    assert statuses(view) == orders_then
    assert_same_tables(view_tables(view), before, "the same view after the lab moved on")
    copy.close()


# --- history of one entity ------------------------------------------------------------------------


def test_the_history_of_a_customer_shows_their_state_after_each_event(lab: Lab):
    history = lab.history("customer-c1")

    stream = lab.customer_log.read(stream_id="customer-c1")
    assert history.event_type.tolist() == [
        "CustomerRegistered",
        "CustomerRenamed",
        "CustomerDeleted",
    ]
    assert history.position.tolist() == [e.position for e in stream]
    assert history.position.is_monotonic_increasing
    assert [t.to_pydatetime() for t in history.recorded_at] == [e.recorded_at for e in stream]
    assert history.name.tolist() == ["Ada", "Ada L", "Ada L"]
    assert history.status.tolist() == ["active", "active", "deleted"]
    assert history.version.tolist() == [1, 2, 3]
    assert history.deleted_at.isna().tolist() == [True, True, False]


def test_the_history_of_an_order_shows_its_state_after_each_event(lab: Lab):
    history = lab.history("order-o1")

    stream = lab.order_log.read(stream_id="order-o1")
    assert history.event_type.tolist() == ["OrderPlaced", "OrderCancelled"]
    assert history.position.tolist() == [e.position for e in stream]
    assert history.status.tolist() == ["open", "cancelled"]
    assert history.actor.tolist() == ["learner", "order-service"]
    assert history.cancel_reason.isna().tolist() == [True, False]
    assert history.cancel_reason.iloc[-1] == "customer 'c1' was deleted"


def test_the_history_of_a_shipped_order_leaves_out_the_rejected_cancellation(lab: Lab):
    history = lab.history("order-o4")

    assert history.event_type.tolist() == ["OrderPlaced", "OrderShipped"]
    assert history.status.tolist() == ["open", "shipped"]


def test_the_history_of_an_unknown_stream_is_empty(lab: Lab):
    assert len(lab.history("customer-nobody")) == 0
    assert len(lab.history("order-nothing")) == 0


# --- diff -----------------------------------------------------------------------------------------


def test_diff_lists_the_orders_the_cascade_cancelled_column_by_column(lab: Lab):
    _, deleted_at = event(lab, "CustomerDeleted", "customer-c1")
    _, cascade_at = event(lab, "OrderCancelled", "order-o1")
    before, after = lab.as_of(time=deleted_at - MICROSECOND), lab.as_of(time=cascade_at)

    changes = lab.diff(before, after, "orders")

    assert list(changes.columns) == ["order_id", "change", "column", "before", "after"]
    assert set(changes.order_id) == {"o1", "o2"}
    assert set(changes.change) == {"changed"}
    assert set(changes.column) == {"status", "cancelled_at", "cancel_reason"}
    status = changes[changes.column == "status"]
    assert status[["order_id", "before", "after"]].values.tolist() == [
        ["o1", "open", "cancelled"],
        ["o2", "open", "cancelled"],
    ]


def test_diff_of_customers_shows_the_deletion(lab: Lab):
    deleted, _ = event(lab, "CustomerDeleted", "customer-c1")

    changes = lab.diff(lab.as_of(position=deleted - 1), lab.as_of(position=deleted), "customers")

    assert changes[["customer_id", "column"]].values.tolist() == [
        ["c1", "status"],
        ["c1", "deleted_at"],
    ]
    assert changes.before.iloc[0] == "active" and changes.after.iloc[0] == "deleted"


def test_diff_marks_added_and_removed_rows(lab: Lab):
    placed, _ = event(lab, "OrderPlaced", "order-o5")
    before, after = lab.as_of(position=placed - 1), lab.as_of(position=placed)

    added = lab.diff(before, after, "orders")
    removed = lab.diff(after, before, "orders")

    assert added[["order_id", "change", "column"]].values.tolist() == [["o5", "added", "*"]]
    assert added.before.isna().all() and "quantity=5" in added.after.iloc[0]
    assert removed[["order_id", "change", "column"]].values.tolist() == [["o5", "removed", "*"]]
    assert removed.after.isna().all() and "order_id=o5" in removed.before.iloc[0]


def test_diff_is_an_empty_dataframe_when_nothing_changed(lab: Lab):
    placed, _ = event(lab, "OrderPlaced", "order-o5")
    view = lab.as_of(position=placed)

    same = lab.diff(view, lab.as_of(position=placed), "orders")
    customers = lab.diff(lab.as_of(position=placed - 1), view, "customers")

    for changes in (same, customers):
        assert isinstance(changes, pd.DataFrame) and changes.empty
    assert list(customers.columns) == ["customer_id", "change", "column", "before", "after"]


def test_diff_of_something_that_is_not_a_read_model_is_refused(lab: Lab):
    view = lab.as_of(position=1)

    with pytest.raises(QueryError, match="no read model 'events'"):
        lab.diff(view, view, "events")


# --- the CLI --------------------------------------------------------------------------------------


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    parsed: list[dict[str, Any]] = json.loads(out)
    return parsed


def test_cli_sql_as_of_position_shows_the_past(lab: Lab, capsys: pytest.CaptureFixture[str]):
    deleted, _ = event(lab, "CustomerDeleted", "customer-c1")
    path = str(lab.path)

    before = cli_json(capsys, "sql", path, ORDER_STATUS, "--as-of-position", str(deleted - 1),
                      "--format", "json")  # fmt: skip
    now = cli_json(capsys, "sql", path, ORDER_STATUS, "--format", "json")

    assert {r["order_id"]: r["status"] for r in before} == statuses(lab.as_of(position=deleted - 1))
    assert {r["order_id"]: r["status"] for r in before}["o1"] == "open"
    assert {r["order_id"]: r["status"] for r in now}["o1"] == "cancelled"


def test_cli_sql_as_of_a_time_shows_the_past_and_a_time_without_zone_is_utc(
    lab: Lab, capsys: pytest.CaptureFixture[str]
):
    _, cascade_at = event(lab, "OrderCancelled", "order-o1")
    path, query = str(lab.path), ORDER_STATUS
    just_before = (cascade_at - timedelta(seconds=1)).isoformat()

    at = cli_json(capsys, "sql", path, query, "--as-of", cascade_at.isoformat(), "--format", "json")
    naive = cli_json(capsys, "sql", path, query, "--as-of",
                     cascade_at.replace(tzinfo=None).isoformat(), "--format", "json")  # fmt: skip
    before = cli_json(capsys, "sql", path, query, "--as-of", just_before, "--format", "json")

    assert {r["order_id"]: r["status"] for r in at} == statuses(lab.as_of(time=cascade_at))
    assert naive == at
    assert [r["status"] for r in at][:2] == ["cancelled", "cancelled"]
    assert [r["status"] for r in before][:2] == ["open", "open"]


def test_cli_sql_takes_a_position_or_a_time_not_both(lab: Lab, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as caught:
        main(["sql", str(lab.path), "SELECT 1", "--as-of-position", "1", "--as-of", "2026-01-01"])

    assert caught.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_an_as_of_view_closes_itself_at_the_end_of_a_with_block(lab: Lab):
    with lab.as_of(position=3) as view:
        assert len(view.sql("SELECT * FROM customers")) >= 1

    with pytest.raises(Exception, match=r"(?i)closed"):
        view.sql("SELECT * FROM customers")
