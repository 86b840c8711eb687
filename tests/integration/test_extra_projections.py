"""Projections added later (`extra_projections.py`): back-filled from the whole history, refreshed
after later syncs, and refused (creating nothing) for a bad name, a query that is not one SELECT,
or a query that reaches outside the lab."""

from __future__ import annotations

from pathlib import Path

import pytest
from readkit import place, shop

from cqrs_lab import domain as d
from cqrs_lab.extra_projections import add_projection
from cqrs_lab.lab import Lab
from cqrs_lab.readstore import QueryError

PRODUCT_SALES = """
SELECT product, count(*) AS orders, sum(quantity) AS units, sum(amount) AS amount
FROM orders
WHERE status <> 'cancelled'
GROUP BY product;
"""
ORDERS_PER_CUSTOMER = """
SELECT customer_id, count(*) AS orders
FROM orders
GROUP BY customer_id
"""
SALES = "SELECT product, orders, units, CAST(amount AS VARCHAR) AS amount FROM sales ORDER BY 1"


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    """Ada (o1, o2, o3 shipped), Bob (o4), Cy (no orders); all synced."""
    return shop(tmp_path / "lab")


def table_names(lab: Lab) -> list[str]:
    query = "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY table_name"
    return list(lab.sql(query)["table_name"])


def test_a_projection_added_later_holds_every_order_placed_before_it_existed(lab: Lab):
    lab.send_many([place("o5", "c2", 1, "1.00", product="gadget")])
    lab.sync()

    sales = add_projection(lab, "sales", PRODUCT_SALES)

    rows = lab.sql(SALES).to_dict("records")
    assert rows == [
        {"product": "gadget", "orders": 1, "units": 1, "amount": "1.00"},
        {"product": "widget", "orders": 4, "units": 10, "amount": "55.28"},
    ]
    placed = len(lab.events(event_type="OrderPlaced"))
    assert int(lab.sql("SELECT sum(orders) AS n FROM sales")["n"].iloc[0]) == placed == 5
    assert sales.rows == 2
    assert sales.positions == {"customer": 3, "order": 9}


def test_a_projection_can_read_the_events_view_for_what_the_tables_forgot(lab: Lab):
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada King"))
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada Byron"))
    query = """
        SELECT stream_id, count(*) AS renames
        FROM events
        WHERE event_type = 'CustomerRenamed'
        GROUP BY stream_id
    """

    add_projection(lab, "renames", query)

    assert lab.sql("SELECT * FROM renames ORDER BY 1").to_dict("records") == [
        {"stream_id": "customer-c1", "renames": 2}
    ]


def test_refresh_picks_up_events_synced_after_the_projection_was_added(lab: Lab):
    sales = add_projection(lab, "sales", PRODUCT_SALES)
    lab.send_many([place("o5", "c2", 2, "3.00", product="gadget")])
    lab.send(d.CancelOrder(order_id="o1", reason="changed mind"))
    lab.sync()
    stale = lab.sql(SALES).to_dict("records")

    refreshed = sales.refresh()

    assert stale == [{"product": "widget", "orders": 4, "units": 10, "amount": "55.28"}]
    assert lab.sql(SALES).to_dict("records") == [
        {"product": "gadget", "orders": 1, "units": 2, "amount": "6.00"},
        {"product": "widget", "orders": 3, "units": 7, "amount": "54.98"},
    ]
    assert refreshed is sales
    assert sales.positions == {"customer": 3, "order": 10}


def test_a_projection_survives_a_rebuild_and_refreshes_to_the_same_rows(lab: Lab):
    sales = add_projection(lab, "sales", PRODUCT_SALES)
    before = lab.sql(SALES)

    lab.rebuild()
    sales.refresh()

    assert lab.sql(SALES).equals(before)


def test_adding_a_projection_again_under_its_name_replaces_it(lab: Lab):
    add_projection(lab, "per_customer", PRODUCT_SALES)

    again = add_projection(lab, "per_customer", ORDERS_PER_CUSTOMER)

    assert list(lab.sql("SELECT * FROM per_customer ORDER BY 1").columns) == [
        "customer_id",
        "orders",
    ]
    assert again.rows == 2


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("product sales", "not a plain identifier"),
        ("Sales", "not a plain identifier"),
        ("sales; DROP TABLE orders", "not a plain identifier"),
        ('"orders"', "not a plain identifier"),
        ("", "not a plain identifier"),
        ("select", "SQL keyword"),
        ("orders", "already a table or view of the read store"),
        ("customers", "already a table or view of the read store"),
        ("events", "already a table or view of the read store"),
        ("customer_order_summary", "already a table or view of the read store"),
        ("read_model_checkpoints", "already a table or view of the read store"),
    ],
)
def test_a_bad_name_is_refused_with_a_message_naming_it_and_creates_nothing(
    lab: Lab, name: str, says: str
):
    before = table_names(lab), lab.sql("SELECT * FROM orders ORDER BY order_id")

    with pytest.raises(QueryError, match=says) as caught:
        add_projection(lab, name, PRODUCT_SALES)

    assert repr(name) in str(caught.value)
    assert table_names(lab) == before[0]
    assert lab.sql("SELECT * FROM orders ORDER BY order_id").equals(before[1])


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("DROP TABLE orders", "exactly one SELECT statement, got: DROP"),
        ("DELETE FROM orders", "got: DELETE"),
        ("CREATE TABLE x AS SELECT 1 AS y", "got: CREATE"),
        ("EXPLAIN SELECT * FROM orders", "got: EXPLAIN"),
        ("SELECT 1 AS x; DROP TABLE orders", "got: SELECT, DROP"),
        ("SELECT 1 AS x) AS p; DROP TABLE orders; SELECT * FROM (SELECT 1", "Parser Error"),
        ("SELECT 1 AS x -- a comment", None),
        ("   ", "got: nothing"),
        ("SELEC product FROM orders", "syntax error"),
        ("SELECT * FROM no_such_table", "no_such_table"),
    ],
)
def test_a_query_that_is_not_one_select_is_refused_with_a_clear_error_and_creates_nothing(
    lab: Lab, query: str, says: str | None
):
    before = table_names(lab), lab.sql("SELECT * FROM orders ORDER BY order_id")

    if says is None:  # a trailing comment is still one SELECT: accepted
        add_projection(lab, "commented", query)
        assert table_names(lab) == sorted([*before[0], "commented"])
        return
    with pytest.raises(QueryError, match=says):
        add_projection(lab, "sneaky", query)

    assert table_names(lab) == before[0]
    assert lab.sql("SELECT * FROM orders ORDER BY order_id").equals(before[1])


@pytest.mark.parametrize(
    "template",
    [
        "SELECT * FROM read_csv('{outside}/secret.csv')",
        "SELECT * FROM '{outside}/secret.csv'",
        "SELECT * FROM read_text('{lab}/../outside/secret.csv')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
    ],
)
def test_nothing_outside_the_lab_is_readable_through_a_projection(
    tmp_path: Path, lab: Lab, template: str
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("secret\nhunter2\n")
    before = table_names(lab)

    with pytest.raises(QueryError, match="Permission Error"):
        add_projection(lab, "leak", template.format(outside=outside, lab=lab.path))

    assert table_names(lab) == before
    assert "hunter2" not in lab.sql("SELECT * FROM orders ORDER BY order_id").to_string()


def test_a_projection_may_read_the_labs_own_files(lab: Lab):
    files = lab.order_log.file_paths()

    add_projection(lab, "raw", f"SELECT count(*) AS n FROM read_parquet({files!r})")

    assert int(lab.sql("SELECT n FROM raw")["n"].iloc[0]) == lab.order_log.committed_position()
