"""The query side: read models in DuckDB, folded set-based from both services' Parquet logs.

One fold serves every purpose. `catch_up` takes the events after each checkpoint, folds them per
stream with `arg_max(..., position) FILTER (...)` (the last value each event type set), merges that
delta into the tables, and moves the checkpoints, all in one transaction. A full rebuild is the
same fold from position 0 onto empty tables; time travel is the same fold up to a cut. Each
payload is parsed once, into a struct (`from_json`), not once per field: 1.6x faster measured on
10^6 events. The teaching path, event by event in Python, is `pyfold.py`; a property test keeps
the two equal.

Read models (column names chosen for learners):
- `customers`: one row per customer, current name, address, status, when registered/deleted.
- `orders`: one row per order, with the customer's *current* name (denormalised: a rename in the
  Customer service reaches every order row), amounts, status and its times.
- `customer_order_summary`: a view over the two (orders by status, revenue of shipped orders).
- `events`: every event of both services, for audit (a view over the Parquet files).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb

from cqrs_lab.eventlog import EventLog

TABLES = ("customers", "orders")

CUSTOMERS_DDL = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id VARCHAR NOT NULL,
    name VARCHAR,
    address VARCHAR,
    status VARCHAR,
    registered_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    version BIGINT
)
"""
ORDERS_DDL = """
CREATE TABLE IF NOT EXISTS orders (
    order_id VARCHAR NOT NULL,
    customer_id VARCHAR,
    customer_name VARCHAR,
    product VARCHAR,
    quantity BIGINT,
    unit_price DECIMAL(18, 2),
    amount DECIMAL(18, 2),
    status VARCHAR,
    placed_at TIMESTAMPTZ,
    shipped_at TIMESTAMPTZ,
    cancelled_at TIMESTAMPTZ,
    cancel_reason VARCHAR,
    updated_at TIMESTAMPTZ,
    version BIGINT
)
"""
CHECKPOINTS_DDL = """
CREATE TABLE IF NOT EXISTS read_model_checkpoints (
    log VARCHAR NOT NULL,
    position BIGINT NOT NULL
)
"""
SUMMARY_VIEW = """
CREATE OR REPLACE VIEW customer_order_summary AS
SELECT c.customer_id,
       c.name AS customer_name,
       c.status AS customer_status,
       count(o.order_id) AS orders,
       count(o.order_id) FILTER (WHERE o.status = 'open') AS open_orders,
       count(o.order_id) FILTER (WHERE o.status = 'shipped') AS shipped_orders,
       count(o.order_id) FILTER (WHERE o.status = 'cancelled') AS cancelled_orders,
       coalesce(sum(o.amount) FILTER (WHERE o.status = 'shipped'), 0) AS revenue
FROM customers AS c
LEFT JOIN orders AS o USING (customer_id)
GROUP BY ALL
"""

# The delta of one catch-up: per stream, what the new events set (NULL: left unchanged).
CUSTOMER_DELTA = """
CREATE OR REPLACE TEMP TABLE customer_delta AS
SELECT any_value(p.customer_id) AS customer_id,
       arg_max(p.name, position)
           FILTER (WHERE event_type IN ('CustomerRegistered', 'CustomerRenamed')) AS name,
       arg_max(p.address, position)
           FILTER (WHERE event_type IN ('CustomerRegistered', 'CustomerAddressChanged')) AS address,
       bool_or(event_type = 'CustomerDeleted') AS deleted,
       bool_or(event_type = 'CustomerRenamed') AS renamed,
       min(recorded_at) FILTER (WHERE event_type = 'CustomerRegistered') AS registered_at,
       max(recorded_at) FILTER (WHERE event_type = 'CustomerDeleted') AS deleted_at,
       max(recorded_at) AS updated_at,
       max(version) AS version
FROM (
    SELECT stream_id, event_type, position, recorded_at, version,
           from_json(payload, '{"customer_id": "VARCHAR", "name": "VARCHAR",
                                "address": "VARCHAR"}') AS p
    FROM read_parquet($files)
    WHERE position > $after
      AND position <= $upto
      AND stream_type = 'Customer'
)
GROUP BY stream_id
"""
CUSTOMER_MERGE = """
CREATE OR REPLACE TEMP TABLE customer_merged AS
SELECT d.customer_id,
       coalesce(d.name, c.name) AS name,
       coalesce(d.address, c.address) AS address,
       CASE WHEN d.deleted OR c.status = 'deleted' THEN 'deleted' ELSE 'active' END AS status,
       coalesce(c.registered_at, d.registered_at) AS registered_at,
       coalesce(d.deleted_at, c.deleted_at) AS deleted_at,
       d.updated_at,
       d.version
FROM customer_delta AS d
LEFT JOIN customers AS c USING (customer_id)
"""
ORDER_DELTA = """
CREATE OR REPLACE TEMP TABLE order_delta AS
SELECT any_value(p.order_id) AS order_id,
       any_value(p.customer_id) FILTER (WHERE event_type = 'OrderPlaced') AS customer_id,
       any_value(p.product) FILTER (WHERE event_type = 'OrderPlaced') AS product,
       any_value(p.quantity) FILTER (WHERE event_type = 'OrderPlaced') AS quantity,
       any_value(CAST(p.unit_price AS DECIMAL(18, 2)))
           FILTER (WHERE event_type = 'OrderPlaced') AS unit_price,
       arg_max(CASE event_type
                   WHEN 'OrderPlaced' THEN 'open'
                   WHEN 'OrderShipped' THEN 'shipped'
                   ELSE 'cancelled'
               END, position) AS status,
       min(recorded_at) FILTER (WHERE event_type = 'OrderPlaced') AS placed_at,
       max(recorded_at) FILTER (WHERE event_type = 'OrderShipped') AS shipped_at,
       max(recorded_at) FILTER (WHERE event_type = 'OrderCancelled') AS cancelled_at,
       arg_max(p.reason, position) FILTER (WHERE event_type = 'OrderCancelled') AS cancel_reason,
       max(recorded_at) AS updated_at,
       max(version) AS version
FROM (
    SELECT stream_id, event_type, position, recorded_at, version,
           from_json(payload, '{"order_id": "VARCHAR", "customer_id": "VARCHAR",
                                "product": "VARCHAR", "quantity": "BIGINT",
                                "unit_price": "VARCHAR", "reason": "VARCHAR"}') AS p
    FROM read_parquet($files)
    WHERE position > $after
      AND position <= $upto
      AND stream_type = 'Order'
)
GROUP BY stream_id
"""
ORDER_MERGE = """
CREATE OR REPLACE TEMP TABLE order_merged AS
SELECT d.order_id,
       coalesce(o.customer_id, d.customer_id) AS customer_id,
       c.name AS customer_name,
       coalesce(o.product, d.product) AS product,
       coalesce(o.quantity, d.quantity) AS quantity,
       coalesce(o.unit_price, d.unit_price) AS unit_price,
       coalesce(o.quantity, d.quantity) * coalesce(o.unit_price, d.unit_price) AS amount,
       d.status,
       coalesce(o.placed_at, d.placed_at) AS placed_at,
       coalesce(d.shipped_at, o.shipped_at) AS shipped_at,
       coalesce(d.cancelled_at, o.cancelled_at) AS cancelled_at,
       coalesce(d.cancel_reason, o.cancel_reason) AS cancel_reason,
       d.updated_at,
       d.version
FROM order_delta AS d
LEFT JOIN orders AS o USING (order_id)
LEFT JOIN customers AS c ON c.customer_id = coalesce(o.customer_id, d.customer_id)
"""
REPLACE_CUSTOMERS = """
DELETE FROM customers WHERE customer_id IN (SELECT customer_id FROM customer_merged);
INSERT INTO customers SELECT * FROM customer_merged;
"""
REPLACE_ORDERS = """
DELETE FROM orders WHERE order_id IN (SELECT order_id FROM order_merged);
INSERT INTO orders SELECT * FROM order_merged;
"""
RENAME_IN_ORDERS = """
UPDATE orders
SET customer_name = c.name
FROM customer_delta AS d
JOIN customers AS c USING (customer_id)
WHERE orders.customer_id = d.customer_id
  AND d.renamed
"""
ANY_RENAMED = """
SELECT count(*) FROM customer_delta WHERE renamed
"""
CLEAR_CHECKPOINT = """
DELETE FROM read_model_checkpoints WHERE log = $log
"""
SET_CHECKPOINT = """
INSERT INTO read_model_checkpoints VALUES ($log, $position)
"""
CHECKPOINTS = """
SELECT log, position
FROM read_model_checkpoints
ORDER BY log
"""


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What one catch-up folded: events per log, and the positions it reached."""

    folded: Mapping[str, int]
    positions: Mapping[str, int]

    def __str__(self) -> str:
        parts = [f"{log} +{n} (to {self.positions[log]})" for log, n in self.folded.items()]
        return "read models caught up: " + ", ".join(parts)


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the read-model tables, views and checkpoints if they are not there."""
    for ddl in (CUSTOMERS_DDL, ORDERS_DDL, CHECKPOINTS_DDL, SUMMARY_VIEW):
        con.execute(ddl)


def drop_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the read models (a rebuild starts from here)."""
    con.execute("DROP VIEW IF EXISTS customer_order_summary")
    for table in (*TABLES, "read_model_checkpoints"):
        con.execute(f"DROP TABLE IF EXISTS {table}")  # names from TABLES only


def checkpoints(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The position each log is folded up to (0 if never)."""
    return {log: position for log, position in con.execute(CHECKPOINTS).fetchall()}


def catch_up(
    con: duckdb.DuckDBPyConnection,
    logs: Mapping[str, EventLog],
    *,
    upto: Mapping[str, int] | None = None,
) -> CatchUp:
    """Fold each log's events after its checkpoint (up to `upto`) into the tables, atomically.

    The Customer log goes first, so an order always finds its customer's current name.
    """
    done = checkpoints(con)
    targets = {name: (upto or {}).get(name, log.position) for name, log in logs.items()}
    con.execute("BEGIN TRANSACTION")
    try:
        for name, query, merge, replace in (
            ("customer", CUSTOMER_DELTA, CUSTOMER_MERGE, REPLACE_CUSTOMERS),
            ("order", ORDER_DELTA, ORDER_MERGE, REPLACE_ORDERS),
        ):
            after, target = done.get(name, 0), targets[name]
            if target > after:
                files = logs[name].file_paths(after=after, upto=target)
                con.execute(query, {"files": files, "after": after, "upto": target})
                con.execute(merge)
                con.execute(replace)
                if name == "customer" and con.execute(ANY_RENAMED).fetchall()[0][0]:
                    con.execute(RENAME_IN_ORDERS)  # the denormalised names, only if any changed
            con.execute(CLEAR_CHECKPOINT, {"log": name})
            con.execute(SET_CHECKPOINT, {"log": name, "position": max(target, after)})
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    folded = {name: max(0, targets[name] - done.get(name, 0)) for name in logs}
    return CatchUp(folded, {name: max(targets[name], done.get(name, 0)) for name in logs})
