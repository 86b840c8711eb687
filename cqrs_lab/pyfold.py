"""The teaching path: the read models folded one event at a time, in plain Python.

`projections.py` folds millions of events set-based in DuckDB; this module does the same job the
way you would explain it on a whiteboard: start with empty tables, look at each event, change
the rows it touches. Step through `apply` in a notebook to watch a read model being built. A
property test proves both paths give the same tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import pyarrow as pa

from cqrs_lab.eventlog import RecordedEvent

Row = dict[str, Any]
Tables = dict[str, dict[str, Row]]  # table name -> key -> row

CUSTOMER_COLUMNS = (
    "customer_id", "name", "address", "status",
    "registered_at", "deleted_at", "updated_at", "version",
)  # fmt: skip
ORDER_COLUMNS = (
    "order_id", "customer_id", "customer_name", "product", "quantity", "unit_price", "amount",
    "status", "placed_at", "shipped_at", "cancelled_at", "cancel_reason", "updated_at", "version",
)  # fmt: skip


def empty() -> Tables:
    """Read models with no rows yet."""
    return {"customers": {}, "orders": {}}


def apply(tables: Tables, event: RecordedEvent) -> None:
    """Change the rows `event` touches; events the read models do not show are ignored."""
    handler = HANDLERS.get(event.event_type)
    if handler is not None and event.stream_type in ("Customer", "Order"):
        handler(tables, event.data, event)


def fold(customer_events: Iterable[RecordedEvent], order_events: Iterable[RecordedEvent]) -> Tables:
    """Both services' events folded into fresh read models (the Customer log first)."""
    tables = empty()
    for event in (*customer_events, *order_events):
        apply(tables, event)
    return tables


def to_arrow(tables: Tables) -> dict[str, pa.Table]:
    """The folded tables as Arrow, typed like the DuckDB read models, ordered by key."""
    result = {}
    for name, columns in (("customers", CUSTOMER_COLUMNS), ("orders", ORDER_COLUMNS)):
        rows = [tables[name][key] for key in sorted(tables[name])]
        result[name] = pa.Table.from_pylist(rows, schema=SCHEMAS[name]).select(columns)
    return result


# --- one function per event type -----------------------------------------------------------------


def customer_registered(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> None:
    """A new customer row."""
    tables["customers"][data["customer_id"]] = {
        "customer_id": data["customer_id"], "name": data["name"], "address": data["address"],
        "status": "active", "registered_at": event.recorded_at, "deleted_at": None,
    }  # fmt: skip
    _touch(tables["customers"][data["customer_id"]], event)


def customer_renamed(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> None:
    """The customer's new name, also on every order of theirs (the denormalised copy)."""
    _customer(tables, data, event)["name"] = data["name"]
    for order in tables["orders"].values():
        if order["customer_id"] == data["customer_id"]:
            order["customer_name"] = data["name"]


def customer_address_changed(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> None:
    """The customer's new address."""
    _customer(tables, data, event)["address"] = data["address"]


def customer_deleted(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> None:
    """The customer stays, marked deleted (their orders are cancelled by their own events)."""
    customer = _customer(tables, data, event)
    customer["status"], customer["deleted_at"] = "deleted", event.recorded_at


def order_placed(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> None:
    """A new order row, with the customer's name as the read side knows it now."""
    customer = tables["customers"].get(data["customer_id"], {})
    quantity, unit_price = int(data["quantity"]), Decimal(data["unit_price"])
    tables["orders"][data["order_id"]] = {
        "order_id": data["order_id"], "customer_id": data["customer_id"],
        "customer_name": customer.get("name"), "product": data["product"],
        "quantity": quantity, "unit_price": unit_price, "amount": quantity * unit_price,
        "status": "open", "placed_at": event.recorded_at, "shipped_at": None,
        "cancelled_at": None, "cancel_reason": None,
    }  # fmt: skip
    _touch(tables["orders"][data["order_id"]], event)


def order_shipped(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> None:
    """The order is shipped."""
    order = _order(tables, data, event)
    order["status"], order["shipped_at"] = "shipped", event.recorded_at


def order_cancelled(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> None:
    """The order is cancelled, and why."""
    order = _order(tables, data, event)
    order["status"], order["cancelled_at"] = "cancelled", event.recorded_at
    order["cancel_reason"] = data["reason"]


def _customer(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> Row:
    return _touch(tables["customers"][data["customer_id"]], event)


def _order(tables: Tables, data: dict[str, Any], event: RecordedEvent) -> Row:
    return _touch(tables["orders"][data["order_id"]], event)


def _touch(row: Row, event: RecordedEvent) -> Row:
    """Every event moves its row's `updated_at` and `version` on."""
    row["updated_at"], row["version"] = event.recorded_at, event.version
    return row


# What changes which read model, event type by event type.
HANDLERS: dict[str, Callable[[Tables, dict[str, Any], RecordedEvent], None]] = {
    "CustomerRegistered": customer_registered,
    "CustomerRenamed": customer_renamed,
    "CustomerAddressChanged": customer_address_changed,
    "CustomerDeleted": customer_deleted,
    "OrderPlaced": order_placed,
    "OrderShipped": order_shipped,
    "OrderCancelled": order_cancelled,
}

_TIME = pa.timestamp("us", tz="UTC")
SCHEMAS = {
    "customers": pa.schema(
        [("customer_id", pa.string()), ("name", pa.string()), ("address", pa.string()),
         ("status", pa.string()), ("registered_at", _TIME), ("deleted_at", _TIME),
         ("updated_at", _TIME), ("version", pa.int64())]
    ),
    "orders": pa.schema(
        [("order_id", pa.string()), ("customer_id", pa.string()), ("customer_name", pa.string()),
         ("product", pa.string()), ("quantity", pa.int64()), ("unit_price", pa.decimal128(18, 2)),
         ("amount", pa.decimal128(18, 2)), ("status", pa.string()), ("placed_at", _TIME),
         ("shipped_at", _TIME), ("cancelled_at", _TIME), ("cancel_reason", pa.string()),
         ("updated_at", _TIME), ("version", pa.int64())]
    ),
}  # fmt: skip
