"""The read models in DuckDB: what `customers`, `orders`, `customer_order_summary` and `events`
show; eventual consistency and lag; checkpoints that move with their rows; incremental catch-up;
rebuilds; and the persistent read store shared between processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from readkit import (
    ZERO_LAGS,
    assert_same_tables,
    new_lab,
    place,
    python_fold,
    register,
    shop,
    tables,
    typed_like_pyfold,
)

from cqrs_lab import domain as d
from cqrs_lab import eventlog
from cqrs_lab import projections as p
from cqrs_lab import segments as fmt
from cqrs_lab.cli import main
from cqrs_lab.errors import CqrsLabError, StoreLockedError
from cqrs_lab.eventlog import EventLog
from cqrs_lab.lab import Lab


def recorded_at(log: EventLog, stream_id: str, event_type: str) -> Any:
    """When the (last) event of that type was recorded in that stream."""
    found = [e for e in log.read(stream_id=stream_id) if e.event_type == event_type]
    assert found, f"no {event_type} in {stream_id}"
    return found[-1].recorded_at


def rows(lab: Lab, table: str) -> dict[str, dict[str, Any]]:
    """A read model's rows by key, as Python values (Decimals stay Decimals)."""
    key = "customer_id" if table == "customers" else "order_id"
    return {row[key]: row for row in lab.read.table(table).to_pylist()}


def heads(lab: Lab) -> dict[str, int]:
    return {"customer": lab.customer_log.position, "order": lab.order_log.position}


# --- customers ------------------------------------------------------------------------------------


def test_a_customer_row_shows_name_address_status_and_when_they_registered(tmp_path: Path):
    lab = shop(tmp_path / "lab")

    ada = rows(lab, "customers")["c1"]

    assert (ada["name"], ada["address"], ada["status"]) == ("Ada", "1 Loop Rd", "active")
    assert ada["registered_at"] == recorded_at(
        lab.customer_log, "customer-c1", "CustomerRegistered"
    )
    assert ada["deleted_at"] is None
    assert sorted(rows(lab, "customers")) == ["c1", "c2", "c3"]


def test_a_deleted_customer_keeps_their_row_marked_deleted_with_the_time(tmp_path: Path):
    lab = shop(tmp_path / "lab")

    lab.send(d.DeleteCustomer(customer_id="c2"))
    lab.sync()

    bob = rows(lab, "customers")["c2"]
    assert (bob["name"], bob["status"]) == ("Bob", "deleted")
    assert bob["deleted_at"] == recorded_at(lab.customer_log, "customer-c2", "CustomerDeleted")
    assert bob["registered_at"] < bob["deleted_at"]
    assert rows(lab, "customers")["c1"]["status"] == "active"


def test_renames_and_moves_show_in_the_customer_row(tmp_path: Path):
    lab = shop(tmp_path / "lab")

    lab.send(d.RenameCustomer(customer_id="c1", name="Ada Lovelace"))
    lab.send(d.ChangeCustomerAddress(customer_id="c1", address="12 St James's Sq"))
    lab.sync()
    lab.send(d.RenameCustomer(customer_id="c1", name="Countess Lovelace"))
    lab.sync()

    ada = rows(lab, "customers")["c1"]
    assert (ada["name"], ada["address"]) == ("Countess Lovelace", "12 St James's Sq")
    assert ada["version"] == 4


# --- orders ---------------------------------------------------------------------------------------


def test_an_order_row_has_quantity_unit_price_and_an_exact_amount(tmp_path: Path):
    lab = shop(tmp_path / "lab")

    orders = rows(lab, "orders")

    assert (orders["o1"]["quantity"], orders["o1"]["unit_price"]) == (3, Decimal("0.10"))
    assert orders["o1"]["amount"] == Decimal("0.30")
    assert orders["o2"]["amount"] == Decimal("39.98")
    assert orders["o4"]["amount"] == Decimal("10.00")
    exact = lab.sql(
        """
        SELECT order_id, CAST(amount AS VARCHAR) AS amount, typeof(amount) AS type,
               amount = quantity * unit_price AS consistent
        FROM orders
        ORDER BY order_id
        """
    )
    assert exact.amount.tolist() == ["0.30", "39.98", "5.00", "10.00"]
    assert set(exact.type) == {"DECIMAL(18,2)"}
    assert exact.consistent.all()


def test_the_largest_order_allowed_keeps_its_amount_to_the_cent(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1"))
    lab.sync()
    quantity, price = d.MAX_QUANTITY, d.MAX_UNIT_PRICE - d.CENT

    assert lab.send(place("big", "c1", quantity, str(price))).accepted
    lab.send(d.ShipOrder(order_id="big"))
    lab.sync()

    assert rows(lab, "orders")["big"]["amount"] == Decimal("999999990000.00")
    revenue = lab.sql("SELECT CAST(revenue AS VARCHAR) AS r FROM customer_order_summary")
    assert revenue.r.tolist() == ["999999990000.00"]


def test_an_order_row_moves_from_open_to_shipped_or_cancelled_with_the_times(tmp_path: Path):
    lab = shop(tmp_path / "lab")

    lab.send(d.CancelOrder(order_id="o4", reason="changed my mind"))
    lab.sync()

    orders = rows(lab, "orders")
    assert {k: v["status"] for k, v in orders.items()} == {
        "o1": "open",
        "o2": "open",
        "o3": "shipped",
        "o4": "cancelled",
    }
    assert orders["o3"]["shipped_at"] == recorded_at(lab.order_log, "order-o3", "OrderShipped")
    assert orders["o4"]["cancelled_at"] == recorded_at(lab.order_log, "order-o4", "OrderCancelled")
    assert orders["o4"]["cancel_reason"] == "changed my mind"
    assert orders["o1"]["shipped_at"] is None and orders["o1"]["cancelled_at"] is None
    assert orders["o1"]["placed_at"] == recorded_at(lab.order_log, "order-o1", "OrderPlaced")


def test_renaming_a_customer_after_placing_renames_every_order_row_of_theirs_after_sync(
    tmp_path: Path,
):
    lab = shop(tmp_path / "lab")

    lab.send(d.RenameCustomer(customer_id="c1", name="Ada Lovelace"))
    names_before_sync = lab.sql("SELECT DISTINCT customer_name FROM orders WHERE customer_id='c1'")
    lab.sync()

    assert names_before_sync.customer_name.tolist() == ["Ada"]
    names = {k: v["customer_name"] for k, v in rows(lab, "orders").items()}
    assert names == {"o1": "Ada Lovelace", "o2": "Ada Lovelace", "o3": "Ada Lovelace", "o4": "Bob"}


def test_an_order_placed_around_a_rename_shows_the_customers_current_name(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send(register("c1", "Ada"))
    lab.sync()

    lab.send(place("o1", "c1"))
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
    lab.send(place("o2", "c1"))  # the Order service still knows her as Ada
    lab.sync()
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada K"))
    lab.send(place("o3", "c1"))
    lab.sync()

    assert {k: v["customer_name"] for k, v in rows(lab, "orders").items()} == {
        "o1": "Ada K",
        "o2": "Ada K",
        "o3": "Ada K",
    }


# --- customer_order_summary and events ------------------------------------------------------------


def test_the_summary_counts_orders_by_status_and_sums_the_shipped_amounts(tmp_path: Path):
    lab = shop(tmp_path / "lab")
    lab.send(d.ShipOrder(order_id="o1"))
    lab.send(d.CancelOrder(order_id="o2", reason="out of stock"))
    lab.sync()

    summary = lab.sql(
        """
        SELECT customer_id, customer_name, customer_status, orders, open_orders, shipped_orders,
               cancelled_orders, CAST(revenue AS VARCHAR) AS revenue
        FROM customer_order_summary
        ORDER BY customer_id
        """
    )

    assert summary.to_dict("records") == [
        {"customer_id": "c1", "customer_name": "Ada", "customer_status": "active", "orders": 3,
         "open_orders": 0, "shipped_orders": 2, "cancelled_orders": 1, "revenue": "5.30"},
        {"customer_id": "c2", "customer_name": "Bob", "customer_status": "active", "orders": 1,
         "open_orders": 1, "shipped_orders": 0, "cancelled_orders": 0, "revenue": "0.00"},
        {"customer_id": "c3", "customer_name": "Cy", "customer_status": "active", "orders": 0,
         "open_orders": 0, "shipped_orders": 0, "cancelled_orders": 0, "revenue": "0.00"},
    ]  # fmt: skip


def test_the_events_view_holds_every_row_of_both_logs_with_its_service(tmp_path: Path):
    lab = shop(tmp_path / "lab")
    lab.send(d.DeleteCustomer(customer_id="c2"))  # a cascade: events in both logs
    lab.sync()

    found = lab.sql(
        """
        SELECT service, position, event_id, event_type, payload
        FROM events
        ORDER BY service, position
        """
    )

    stored = [
        (service, e.position, e.event_id, e.event_type, e.payload)
        for service, log in (("customer", lab.customer_log), ("order", lab.order_log))
        for e in log.read()
    ]
    assert list(found.itertuples(index=False, name=None)) == stored
    assert set(found.service) == {"customer", "order"}
    assert "OrderCancelled" in set(found.event_type)


def test_rejected_commands_create_no_rows_but_are_in_the_events(tmp_path: Path):
    lab = shop(tmp_path / "lab")
    before = tables(lab)

    results = lab.send_many(
        [
            register("c1", "Again"),
            register("c9", ""),
            d.RenameCustomer(customer_id="c404", name="Nobody"),
            place("o9", "c404"),
            place("o1", "c1"),
            place("o10", "c1", quantity=0),
            d.ShipOrder(order_id="o404"),
            d.CancelOrder(order_id="o3", reason="too late: shipped"),
        ]
    )
    lab.sync()

    assert [r.status for r in results] == ["rejected"] * 8
    assert_same_tables(tables(lab), before, "after rejected commands")
    rejections = lab.sql("SELECT service FROM events WHERE event_type = 'CommandRejected'")
    assert sorted(rejections.service) == ["customer"] * 3 + ["order"] * 5


# --- eventual consistency -------------------------------------------------------------------------


def test_before_sync_the_read_side_shows_the_old_state_and_lag_says_how_far_behind(
    tmp_path: Path,
):
    lab = shop(tmp_path / "lab")
    events_before = len(lab.sql("SELECT * FROM events"))

    lab.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
    lab.send(register("c4", "Dee"))
    lab.send(place("o5", "c2"))
    lab.send(d.ShipOrder(order_id="o1"))

    assert lab.lag() == {
        "order service <- customer log": 2,
        "customers <- customer log": 2,
        "orders <- customer log": 2,
        "orders <- order log": 2,
    }
    assert lab.sql("SELECT name FROM customers ORDER BY customer_id").name.tolist() == [
        "Ada",
        "Bob",
        "Cy",
    ]
    assert lab.sql("SELECT status FROM orders WHERE order_id = 'o1'").status.tolist() == ["open"]
    assert lab.sql("SELECT count(*) AS n FROM orders WHERE order_id = 'o5'").n[0] == 0
    assert len(lab.sql("SELECT * FROM events")) == events_before

    report = lab.sync()

    assert report.lag_before["orders <- order log"] == 2
    assert report.lag_after == ZERO_LAGS
    assert lab.lag() == ZERO_LAGS
    assert lab.sql("SELECT name FROM customers ORDER BY customer_id").name.tolist() == [
        "Ada L",
        "Bob",
        "Cy",
        "Dee",
    ]
    assert lab.sql("SELECT status FROM orders WHERE order_id = 'o1'").status.tolist() == ["shipped"]
    assert lab.sql("SELECT customer_name FROM orders WHERE order_id = 'o5'").iloc[0, 0] == "Bob"
    total = lab.customer_log.committed_position() + lab.order_log.committed_position()
    assert len(lab.sql("SELECT * FROM events")) == total > events_before


def test_a_sync_with_nothing_to_do_reports_zero_lag_and_changes_nothing(tmp_path: Path):
    lab = shop(tmp_path / "lab")
    before = tables(lab)

    report = lab.sync()

    assert report.lag_before == report.lag_after == ZERO_LAGS
    assert dict(report.read_models.folded) == {"customer": 0, "order": 0}
    assert_same_tables(tables(lab), before, "after an idle sync")


# --- checkpoints move with their rows -------------------------------------------------------------


class FailingConnection:
    """A DuckDB connection that raises on the n-th execution of one SQL statement."""

    def __init__(self, con: duckdb.DuckDBPyConnection, sql: str, occurrence: int) -> None:
        self.con, self.sql, self.occurrence, self.seen = con, sql, occurrence, 0

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        if query == self.sql:
            self.seen += 1
            if self.seen == self.occurrence:
                raise RuntimeError("injected failure in the middle of a catch-up")
        return self.con.execute(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


@pytest.mark.parametrize(
    ("step", "occurrence"),
    [
        ("RENAME_IN_ORDERS", 1),  # customers already updated
        ("ORDER_DELTA", 1),
        ("INSERT_ORDER_DELTA", 1),  # new orders inserted before the update of the others
        ("UPDATE_ORDERS", 1),
        ("SET_CHECKPOINT", 2),  # the customer checkpoint has moved already; the order one fails
    ],
)
def test_a_catch_up_that_fails_midway_leaves_rows_and_checkpoints_as_they_were(
    tmp_path: Path, step: str, occurrence: int
):
    lab = shop(tmp_path / "lab")
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
    lab.send(register("c4", "Dee"))
    lab.send(d.ShipOrder(order_id="o1"))
    before, checkpoints = tables(lab), p.checkpoints(lab.con)
    real = lab.read.con
    lab.read.con = FailingConnection(real, getattr(p, step), occurrence)  # type: ignore[assignment]

    with pytest.raises(RuntimeError, match="injected failure"):
        lab.sync()

    lab.read.con = real
    assert p.checkpoints(lab.con) == checkpoints
    assert_same_tables(tables(lab), before, f"after a failure at {step}")
    assert lab.sql("SELECT name FROM customers WHERE customer_id = 'c1'").name[0] == "Ada"
    assert lab.lag()["customers <- customer log"] == 2
    lab.sync()  # the next catch-up folds everything the failed one did not
    assert lab.lag() == ZERO_LAGS
    assert_same_tables(typed_like_pyfold(tables(lab)), python_fold(lab), "after the retry")


def test_the_checkpoints_are_the_logs_heads_after_sync(tmp_path: Path):
    lab = shop(tmp_path / "lab")
    lab.send(d.DeleteCustomer(customer_id="c1"))
    lab.sync()

    checkpoints = lab.sql("SELECT log, position FROM read_model_checkpoints ORDER BY log")

    assert dict(zip(checkpoints.log, checkpoints.position, strict=True)) == heads(lab)


# --- incremental catch-up -------------------------------------------------------------------------


READING = ("read", "scan", "relation", "files", "file_paths", "stream_version")


def spy_on_reads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record every outermost call of EventLog's public reading methods: which log, which method,
    its arguments, the segment files it named, and the three callers outside eventlog.py."""
    calls: list[dict[str, Any]] = []
    inside = [0]
    skip = {eventlog.__file__, __file__}

    def spy(method: str, original: Any) -> Any:
        def reading(self: EventLog, *args: Any, **kwargs: Any) -> Any:
            if inside[0]:
                return original(self, *args, **kwargs)
            frame, chain = sys._getframe(1), []
            while frame is not None and len(chain) < 3:
                if frame.f_code.co_filename not in skip:
                    chain.append(f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}")
                frame = frame.f_back  # type: ignore[assignment]
            inside[0] += 1
            try:
                found = original(self, *args, **kwargs)
            finally:
                inside[0] -= 1
            names = [Path(p).name for p in found] if method in ("files", "file_paths") else []
            calls.append(
                {"log": self.path.name, "method": method, "args": args, "kwargs": kwargs,
                 "files": names, "chain": chain}
            )  # fmt: skip
            return found

        return reading

    for method in READING:
        if hasattr(EventLog, method):
            monkeypatch.setattr(EventLog, method, spy(method, getattr(EventLog, method)))
    return calls


def _many_syncs(path: Path) -> Lab:
    lab = shop(path)
    for n in range(5, 9):
        lab.send(register(f"c{n}", f"Customer {n}"))
        lab.sync()
        lab.send(place(f"o{n}", f"c{n}", n, "1.25"))
        lab.sync()
    return lab


def test_sync_folds_only_the_segments_after_each_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = _many_syncs(tmp_path / "lab")
    checkpoints, delivered = p.checkpoints(lab.con), lab.subscription.checkpoint
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
    lab.send(d.ShipOrder(order_id="o5"))
    calls = spy_on_reads(monkeypatch)

    lab.sync()

    folds = [c for c in calls if c["chain"][0] == "projections.catch_up"]
    assert sorted(c["log"] for c in folds) == ["customer", "order"]
    for call in folds:
        assert call["kwargs"] == {
            "after": checkpoints[call["log"]],
            "upto": heads(lab)[call["log"]],
        }
        assert all(fmt.parse_segment(f).last > call["kwargs"]["after"] for f in call["files"])
    assert len(folds[0]["files"]) == 1  # one new Customer commit, out of a dozen segments
    deliveries = [c for c in calls if "messaging.pending" in c["chain"]]
    assert deliveries and all(c["kwargs"]["after"] >= delivered for c in deliveries)
    unbounded = [c for c in calls if c["kwargs"].get("after") is None]
    assert {c["chain"][0] for c in unbounded} <= {"readstore._refresh_events_view"}


def test_sync_never_opens_the_segments_it_folded_before(tmp_path: Path):
    lab = _many_syncs(tmp_path / "lab")
    for log in (lab.customer_log, lab.order_log):
        # The first segment stays readable: DuckDB reads its footer to learn the `events`
        # view's columns each time the view is pointed at the files. Every other old segment
        # becomes garbage, so any rescan of history fails loudly.
        for segment in log.files()[1:]:
            segment.write_bytes(b"not a parquet file")
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
    lab.send(d.ShipOrder(order_id="o5"))
    lab.send(register("c9", "Nine"))

    lab.sync()

    customers, orders = rows(lab, "customers"), rows(lab, "orders")
    assert customers["c1"]["name"] == "Ada L" and customers["c9"]["name"] == "Nine"
    assert orders["o5"]["status"] == "shipped"
    assert {orders[o]["customer_name"] for o in ("o1", "o2", "o3")} == {"Ada L"}
    assert lab.lag() == ZERO_LAGS


# --- rebuilds -------------------------------------------------------------------------------------


def _eventful(path: Path) -> Lab:
    lab = shop(path)
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
    lab.send(d.ChangeCustomerAddress(customer_id="c2", address="2 Side St"))
    lab.sync()
    lab.send(d.ShipOrder(order_id="o1"))
    lab.send(d.DeleteCustomer(customer_id="c1"))
    lab.sync()
    lab.send(place("o6", "c2", 7, "3.33"))
    lab.send(d.RenameCustomer(customer_id="c2", name="Robert"))
    lab.sync()
    return lab


def test_a_rebuild_gives_the_same_tables_as_the_incremental_catch_up(tmp_path: Path):
    lab = _eventful(tmp_path / "lab")
    incremental = tables(lab)
    summary = lab.sql("SELECT * FROM customer_order_summary ORDER BY customer_id")

    result = lab.rebuild()

    assert dict(result.positions) == heads(lab)
    assert dict(result.folded) == heads(lab)
    assert_same_tables(tables(lab), incremental, "rebuild vs incremental")
    rebuilt_summary = lab.sql("SELECT * FROM customer_order_summary ORDER BY customer_id")
    assert rebuilt_summary.equals(summary)
    assert incremental["orders"].num_rows == 5


def test_a_rebuild_keeps_the_last_name_address_and_state_each_stream_was_given(tmp_path: Path):
    lab = new_lab(tmp_path / "lab")
    lab.send_many([register("c1", "Ada", "1 Loop Rd"), register("c2", "Bob")])
    lab.sync()  # the Order service learns the customers
    lab.send_many([place("o1", "c1"), place("o2", "c1"), place("o3", "c2")])
    lab.send_many(
        [
            d.RenameCustomer(customer_id="c1", name="Ada L"),
            d.ChangeCustomerAddress(customer_id="c1", address="2 Side St"),
            d.RenameCustomer(customer_id="c1", name="Ada Lovelace"),
            d.ChangeCustomerAddress(customer_id="c1", address="3 High St"),
            d.ShipOrder(order_id="o1"),
            d.CancelOrder(order_id="o2", reason="out of stock"),
            d.DeleteCustomer(customer_id="c2"),
        ]
    )
    lab.sync()

    lab.rebuild()

    customers, orders = rows(lab, "customers"), rows(lab, "orders")

    assert (customers["c1"]["name"], customers["c1"]["address"]) == ("Ada Lovelace", "3 High St")
    assert (customers["c1"]["status"], customers["c1"]["version"]) == ("active", 5)
    assert (customers["c2"]["status"], customers["c2"]["name"]) == ("deleted", "Bob")
    assert {o: (r["status"], r["customer_name"]) for o, r in orders.items()} == {
        "o1": ("shipped", "Ada Lovelace"),
        "o2": ("cancelled", "Ada Lovelace"),
        "o3": ("cancelled", "Bob"),
    }
    assert orders["o2"]["cancel_reason"] == "out of stock"
    assert orders["o3"]["cancel_reason"] == "customer 'c2' was deleted"
    assert_same_tables(typed_like_pyfold(tables(lab)), python_fold(lab), "rebuild vs pyfold")


def test_a_lab_opened_afresh_folds_the_same_tables_as_the_running_one(tmp_path: Path):
    lab = _eventful(tmp_path / "lab")

    with Lab.open(tmp_path / "lab") as fresh:
        assert_same_tables(tables(fresh), tables(lab), "fresh open vs incremental")
        assert fresh.lag() == ZERO_LAGS


def test_the_incremental_tables_equal_the_python_fold(tmp_path: Path):
    lab = _eventful(tmp_path / "lab")

    assert_same_tables(typed_like_pyfold(tables(lab)), python_fold(lab), "incremental vs pyfold")


# --- the persistent read store --------------------------------------------------------------------


def _store_contents(path: Path) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Checkpoints and customer names read straight from a closed read/read.duckdb."""
    con = duckdb.connect(str(path / "read" / "read.duckdb"), read_only=True)
    try:
        checkpoints = dict(
            con.execute("SELECT log, position FROM read_model_checkpoints").fetchall()
        )
        names = con.execute("SELECT customer_id, name FROM customers ORDER BY 1").fetchall()
    finally:
        con.close()
    return checkpoints, names


def test_a_persistent_lab_keeps_its_read_models_in_read_duckdb(tmp_path: Path):
    shop(tmp_path / "lab").close()

    with Lab.open(tmp_path / "lab", persistent=True) as lab:
        expected = heads(lab)

    assert (tmp_path / "lab" / "read" / "read.duckdb").is_file()
    checkpoints, names = _store_contents(tmp_path / "lab")
    assert checkpoints == expected
    assert names == [("c1", "Ada"), ("c2", "Bob"), ("c3", "Cy")]


def test_a_persistent_store_opened_again_folds_only_what_came_after_its_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    shop(tmp_path / "lab").close()
    Lab.open(tmp_path / "lab", persistent=True).close()
    saved, _ = _store_contents(tmp_path / "lab")
    with Lab.open(tmp_path / "lab") as other:  # an in-memory lab moves the logs on
        other.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
        other.sync()
    calls = spy_on_reads(monkeypatch)

    with Lab.open(tmp_path / "lab", persistent=True) as lab:
        folds = [c for c in calls if c["chain"][0] == "projections.catch_up"]
        assert {c["log"]: c["kwargs"]["after"] for c in folds} == saved
        assert lab.sql("SELECT name FROM customers WHERE customer_id = 'c1'").name[0] == "Ada L"
        assert_same_tables(typed_like_pyfold(tables(lab)), python_fold(lab), "persistent")


HOLDER = """
import sys, time
from pathlib import Path
from cqrs_lab.lab import Lab

lab = Lab.open(sys.argv[1], persistent=True)
Path(sys.argv[2]).write_text("holding")
deadline = time.monotonic() + 60
while not Path(sys.argv[3]).exists() and time.monotonic() < deadline:
    time.sleep(0.02)
lab.close()
"""


def _wait_for(flag: Path, child: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert child.poll() is None, f"the child died: {child.communicate()}"
        assert time.monotonic() < deadline, "the child never got ready"
        time.sleep(0.02)


def test_a_second_process_opening_a_held_persistent_store_gets_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    shop(tmp_path / "lab").close()
    Lab.open(tmp_path / "lab", persistent=True).close()
    ready, done = tmp_path / "ready", tmp_path / "done"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "lab"), str(ready), str(done)],
        text=True,
        cwd=tmp_path,
    )
    try:
        _wait_for(ready, holder)

        with pytest.raises(StoreLockedError) as caught:
            Lab.open(tmp_path / "lab", persistent=True)
        status = main(["sql", str(tmp_path / "lab"), "SELECT 1"])  # finds the store, held
        with Lab.open(tmp_path / "lab") as in_memory:  # the default still works meanwhile
            names = in_memory.sql("SELECT name FROM customers ORDER BY customer_id").name.tolist()
    finally:
        done.touch()
        holder.wait(timeout=60)

    message = str(caught.value)
    assert isinstance(caught.value, CqrsLabError)
    assert str(tmp_path / "lab" / "read" / "read.duckdb") in message
    assert f"PID {holder.pid}" in message  # what holds it
    assert "persistent=True" in message and "close the other" in message  # what to do
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "read.duckdb" in err and "in use" in err
    assert names == ["Ada", "Bob", "Cy"]
    with Lab.open(tmp_path / "lab", persistent=True) as lab:  # released with the holder
        assert len(lab.sql("SELECT * FROM customers")) == 3


READER = """
import json, sys, time
from pathlib import Path
from cqrs_lab.lab import Lab

lab = Lab.open(sys.argv[1])
Path(sys.argv[2]).write_text("open")
deadline = time.monotonic() + 60
while not Path(sys.argv[3]).exists() and time.monotonic() < deadline:
    time.sleep(0.02)
together = Path(sys.argv[3]).exists()
counts = [int(lab.sql("SELECT count(*) AS n FROM orders").n[0]) for _ in range(20)]
names = lab.sql("SELECT name FROM customers ORDER BY customer_id").name.tolist()
lab.close()
print(json.dumps({"together": together, "counts": sorted(set(counts)), "names": names}))
"""


def test_two_processes_can_each_open_the_lab_in_memory_and_query_at_once(tmp_path: Path):
    shop(tmp_path / "lab").close()
    child_open, parent_open = tmp_path / "child-open", tmp_path / "parent-open"
    child = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path / "lab"), str(child_open), str(parent_open)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        with Lab.open(tmp_path / "lab") as lab:
            _wait_for(child_open, child)
            parent_open.touch()
            counts = {int(lab.sql("SELECT count(*) AS n FROM orders").n[0]) for _ in range(20)}
            out, err = child.communicate(timeout=60)  # the child queries while we hold ours
            assert len(lab.sql("SELECT * FROM customers")) == 3
    finally:
        if child.poll() is None:
            child.kill()

    assert child.returncode == 0, err
    assert json.loads(out) == {"together": True, "counts": [4], "names": ["Ada", "Bob", "Cy"]}
    assert counts == {4}
    assert not (tmp_path / "lab" / "read").exists()


def test_cli_rebuild_creates_the_persistent_store_and_cli_sql_then_uses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    shop(tmp_path / "lab").close()
    path = tmp_path / "lab"

    assert main(["rebuild", str(path)]) == 0
    assert "read models caught up" in capsys.readouterr().out
    assert (path / "read" / "read.duckdb").is_file()
    con = duckdb.connect(str(path / "read" / "read.duckdb"))
    con.execute("CREATE TABLE marker AS SELECT 'from the persistent store' AS note")
    con.close()

    assert main(["sql", str(path), "SELECT note FROM marker", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "note\nfrom the persistent store\n"

    with Lab.open(path) as lab:  # the logs move on without the persistent store
        lab.send(d.RenameCustomer(customer_id="c3", name="Cyrus"))
        lab.sync()
        expected = heads(lab)
    assert main(["rebuild", str(path)]) == 0
    checkpoints, names = _store_contents(path)
    assert checkpoints == expected
    assert names == [("c1", "Ada"), ("c2", "Bob"), ("c3", "Cyrus")]
