"""The query side: read models in DuckDB, folded set-based from both services' Parquet logs.

One fold serves every purpose. `catch_up` takes the events after each checkpoint, folds them per
stream with `arg_max(..., position) FILTER (...)` (the last value each event type set), merges that
delta into the tables, and moves the checkpoints, all in one transaction. Time travel is the
same fold up to a cut. A full rebuild (from position 0 onto empty tables) folds event type by
event type instead (`FRESH_CUSTOMERS`, `FRESH_ORDERS`): the creating event's payload is parsed
and the later events are grouped over ints and times only. Each payload is parsed once, into a
struct (`from_json`), not once per field: 1.6x faster measured on 10^6 events. The teaching path,
event by event in Python, is `pyfold.py`; a property test keeps the three equal.

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
from typing import Any

import duckdb

from cqrs_lab import progress
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

# What the events in (after, upto] set, per stream (NULL: left unchanged). `created`: the
# stream's first event is among them, so there is no row for it yet (pyfold creates rows then).
CUSTOMER_FOLD = """
SELECT any_value(p.customer_id) AS customer_id,
       arg_max(p.name, position)
           FILTER (WHERE event_type IN ('CustomerRegistered', 'CustomerRenamed')) AS name,
       arg_max(p.address, position)
           FILTER (WHERE event_type IN ('CustomerRegistered', 'CustomerAddressChanged')) AS address,
       bool_or(event_type = 'CustomerDeleted') AS deleted,
       bool_or(event_type = 'CustomerRenamed') AS renamed,
       bool_or(event_type = 'CustomerRegistered') AS created,
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
ORDER_FOLD = """
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
       bool_or(event_type = 'OrderPlaced') AS created,
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
# New rows, from a delta relation `d` (the temp table, or the fold itself on empty tables).
INSERT_CUSTOMERS = """
INSERT INTO customers
SELECT d.customer_id, d.name, d.address,
       CASE WHEN d.deleted THEN 'deleted' ELSE 'active' END AS status,
       d.registered_at, d.deleted_at, d.updated_at, d.version
FROM ({delta}) AS d
WHERE d.created
"""
INSERT_ORDERS = """
INSERT INTO orders
SELECT d.order_id, d.customer_id, c.name AS customer_name, d.product, d.quantity, d.unit_price,
       d.quantity * d.unit_price AS amount, d.status, d.placed_at, d.shipped_at, d.cancelled_at,
       d.cancel_reason, d.updated_at, d.version
FROM ({delta}) AS d
LEFT JOIN customers AS c USING (customer_id)
WHERE d.created
"""
# Rows that exist: changed in place, one pass over the table's key column, no delete + insert.
UPDATE_CUSTOMERS = """
UPDATE customers
SET name = coalesce(d.name, customers.name),
    address = coalesce(d.address, customers.address),
    status = CASE WHEN d.deleted THEN 'deleted' ELSE customers.status END,
    deleted_at = coalesce(d.deleted_at, customers.deleted_at),
    updated_at = d.updated_at,
    version = d.version
FROM customer_delta AS d
WHERE customers.customer_id = d.customer_id
  AND NOT d.created
"""
UPDATE_ORDERS = """
UPDATE orders
SET status = d.status,
    shipped_at = coalesce(d.shipped_at, orders.shipped_at),
    cancelled_at = coalesce(d.cancelled_at, orders.cancelled_at),
    cancel_reason = coalesce(d.cancel_reason, orders.cancel_reason),
    updated_at = d.updated_at,
    version = d.version
FROM order_delta AS d
WHERE orders.order_id = d.order_id
  AND NOT d.created
"""
# The denormalised names: the delta's last name is the customer's current one.
RENAME_IN_ORDERS = """
UPDATE orders
SET customer_name = d.name
FROM customer_delta AS d
WHERE orders.customer_id = d.customer_id
  AND d.renamed
"""
CUSTOMER_DELTA = f"CREATE OR REPLACE TEMP TABLE customer_delta AS\n{CUSTOMER_FOLD}"
ORDER_DELTA = f"CREATE OR REPLACE TEMP TABLE order_delta AS\n{ORDER_FOLD}"
INSERT_CUSTOMER_DELTA = INSERT_CUSTOMERS.format(delta="SELECT * FROM customer_delta")
INSERT_ORDER_DELTA = INSERT_ORDERS.format(delta="SELECT * FROM order_delta")
# A rebuild (a log folded from its start onto an empty table) folds event type by event type:
# the creating event is one row per stream and carries the static fields, so only its payload is
# parsed in full; the later events are grouped per stream over ints and times, keeping only the
# last payload of each kind (most streams have none, or one). No string is aggregated per stream
# but those: 27 % less CPU than the general fold above (785 vs 1070 ms, median of 9 on 10^6
# events). It relies on what the domain guarantees: a stream's first event creates it, and only
# that one (a stream without it gets no row, as in the general fold).
FRESH_CUSTOMERS = """
INSERT INTO customers
WITH registered AS (
    SELECT stream_id, recorded_at, version,
           from_json(payload, '{"customer_id": "VARCHAR", "name": "VARCHAR",
                                "address": "VARCHAR"}') AS p
    FROM read_parquet($files)
    WHERE position > $after
      AND position <= $upto
      AND stream_type = 'Customer'
      AND event_type = 'CustomerRegistered'
), later AS (
    SELECT stream_id,
           arg_max(payload, position) FILTER (WHERE event_type = 'CustomerRenamed') AS renamed,
           arg_max(payload, position) FILTER (WHERE event_type = 'CustomerAddressChanged') AS moved,
           max(recorded_at) FILTER (WHERE event_type = 'CustomerDeleted') AS deleted_at,
           max(recorded_at) AS updated_at,
           max(version) AS version
    FROM read_parquet($files)
    WHERE position > $after
      AND position <= $upto
      AND stream_type = 'Customer'
      AND event_type <> 'CustomerRegistered'
    GROUP BY stream_id
)
SELECT r.p.customer_id,
       coalesce(l.renamed ->> 'name', r.p.name) AS name,
       coalesce(l.moved ->> 'address', r.p.address) AS address,
       CASE WHEN l.deleted_at IS NULL THEN 'active' ELSE 'deleted' END AS status,
       r.recorded_at AS registered_at,
       l.deleted_at,
       coalesce(l.updated_at, r.recorded_at) AS updated_at,
       coalesce(l.version, r.version) AS version
FROM registered AS r
LEFT JOIN later AS l USING (stream_id)
"""
FRESH_ORDERS = """
INSERT INTO orders
WITH placed AS (
    SELECT stream_id, recorded_at, version,
           from_json(payload, '{"order_id": "VARCHAR", "customer_id": "VARCHAR",
                                "product": "VARCHAR", "quantity": "BIGINT",
                                "unit_price": "VARCHAR"}') AS p
    FROM read_parquet($files)
    WHERE position > $after
      AND position <= $upto
      AND stream_type = 'Order'
      AND event_type = 'OrderPlaced'
), later AS (
    SELECT stream_id,
           arg_max(event_type = 'OrderShipped', position) AS shipped,
           max(recorded_at) FILTER (WHERE event_type = 'OrderShipped') AS shipped_at,
           max(recorded_at) FILTER (WHERE event_type = 'OrderCancelled') AS cancelled_at,
           arg_max(payload, position) FILTER (WHERE event_type = 'OrderCancelled') AS cancelled,
           max(recorded_at) AS updated_at,
           max(version) AS version
    FROM read_parquet($files)
    WHERE position > $after
      AND position <= $upto
      AND stream_type = 'Order'
      AND event_type <> 'OrderPlaced'
    GROUP BY stream_id
), folded AS (
    SELECT pl.p.order_id, pl.p.customer_id, pl.p.product, pl.p.quantity,
           CAST(pl.p.unit_price AS DECIMAL(18, 2)) AS unit_price,
           CASE
               WHEN l.shipped IS NULL THEN 'open'
               WHEN l.shipped THEN 'shipped'
               ELSE 'cancelled'
           END AS status,
           pl.recorded_at AS placed_at, l.shipped_at, l.cancelled_at,
           l.cancelled ->> 'reason' AS cancel_reason,
           coalesce(l.updated_at, pl.recorded_at) AS updated_at,
           coalesce(l.version, pl.version) AS version
    FROM placed AS pl
    LEFT JOIN later AS l USING (stream_id)
)
SELECT o.order_id, o.customer_id, c.name AS customer_name, o.product, o.quantity, o.unit_price,
       o.quantity * o.unit_price AS amount, o.status, o.placed_at, o.shipped_at, o.cancelled_at,
       o.cancel_reason, o.updated_at, o.version
FROM folded AS o
LEFT JOIN customers AS c USING (customer_id)
"""
COUNTS = """
SELECT count(*) FILTER (WHERE NOT created), count(*) FILTER (WHERE renamed)
FROM customer_delta
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

    __repr__ = __str__


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


def set_checkpoints(con: duckdb.DuckDBPyConnection, positions: Mapping[str, int]) -> None:
    """Record the position each log is folded up to (tables filled by other means)."""
    for log, position in positions.items():
        con.execute(CLEAR_CHECKPOINT, {"log": log})
        con.execute(SET_CHECKPOINT, {"log": log, "position": position})


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
    work = {name: max(0, targets[name] - done.get(name, 0)) for name in logs}
    con.execute("BEGIN TRANSACTION")
    try:
        with progress.bar(sum(work.values()), desc="read models") as shown:
            for name in ("customer", "order"):
                after, target = done.get(name, 0), targets[name]
                if target > after:
                    files = logs[name].file_paths(after=after, upto=target)
                    params = {"files": files, "after": after, "upto": target}
                    fresh = after == 0 and (name == "order" or done.get("order", 0) == 0)
                    (_fold_fresh if fresh else _fold_delta)(con, name, params)
                con.execute(CLEAR_CHECKPOINT, {"log": name})
                con.execute(SET_CHECKPOINT, {"log": name, "position": max(target, after)})
                shown.update(work.get(name, 0))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return CatchUp(work, {name: max(targets[name], done.get(name, 0)) for name in logs})


# Per log: the fresh fold (onto no rows), the delta table, its insert of new rows, its update.
STEPS = {
    "customer": (FRESH_CUSTOMERS, CUSTOMER_DELTA, INSERT_CUSTOMER_DELTA, UPDATE_CUSTOMERS),
    "order": (FRESH_ORDERS, ORDER_DELTA, INSERT_ORDER_DELTA, UPDATE_ORDERS),
}


def _fold_fresh(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> None:
    """A log folded from its start onto a table with no rows: every row is new, so the fold is
    inserted as it comes, with no delta table, join with old rows or update (a rebuild)."""
    con.execute(STEPS[name][0], params)


def _fold_delta(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> None:
    """The events after a checkpoint: new rows inserted, existing ones updated in place."""
    _, delta, insert, update = STEPS[name]
    con.execute(delta, params)
    con.execute(insert)
    if name == "order":
        con.execute(update)
        return
    existing, renamed = con.execute(COUNTS).fetchall()[0]
    if existing:
        con.execute(update)
    if renamed:
        con.execute(RENAME_IN_ORDERS)  # the denormalised names, only if any changed
