"""Helpers for the read-side tests: labs with a fixed clock, a small shop, and table comparisons."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from cqrs_lab import domain as d
from cqrs_lab import pyfold
from cqrs_lab.determinism import fixed_clock, seeded_ids
from cqrs_lab.lab import Lab

START = datetime(2026, 1, 1, tzinfo=UTC)
READ_MODELS = ("customers", "orders")
ZERO_LAGS = {
    "order service <- customer log": 0,
    "customers <- customer log": 0,
    "orders <- customer log": 0,
    "orders <- order log": 0,
}


def new_lab(path: Path, *, persistent: bool = False) -> Lab:
    """A fresh lab with the fixed clock and seeded ids the brief prescribes."""
    return Lab.create(path, clock=fixed_clock(START), ids=seeded_ids(1), persistent=persistent)


def register(customer_id: str, name: str = "Ada", address: str = "1 Loop Rd") -> d.RegisterCustomer:
    return d.RegisterCustomer(customer_id=customer_id, name=name, address=address)


def place(
    order_id: str, customer_id: str, quantity: int = 1, price: str = "9.99", product: str = "widget"
) -> d.PlaceOrder:
    return d.PlaceOrder(
        order_id=order_id,
        customer_id=customer_id,
        product=product,
        quantity=quantity,
        unit_price=Decimal(price),
    )


def shop(path: Path) -> Lab:
    """Ada (two open orders, one shipped), Bob (one open order), Cy (no orders); all synced."""
    lab = new_lab(path)
    lab.send_many([register("c1", "Ada"), register("c2", "Bob"), register("c3", "Cy")])
    lab.sync()
    lab.send_many(
        [
            place("o1", "c1", 3, "0.10"),
            place("o2", "c1", 2, "19.99"),
            place("o3", "c1", 1, "5.00"),
            place("o4", "c2", 4, "2.50"),
        ]
    )
    lab.send(d.ShipOrder(order_id="o3"))
    lab.sync()
    return lab


def tables(lab: Lab) -> dict[str, pa.Table]:
    """The live read models as Arrow tables, ordered by key."""
    return {name: lab.read.table(name) for name in READ_MODELS}


def python_fold(lab: Lab) -> dict[str, pa.Table]:
    """The read models folded event by event in Python from the lab's logs."""
    return pyfold.to_arrow(pyfold.fold(lab.customer_log.read(), lab.order_log.read()))


def typed_like_pyfold(found: dict[str, pa.Table]) -> dict[str, pa.Table]:
    return {name: table.cast(pyfold.SCHEMAS[name]) for name, table in found.items()}


def table_differences(actual: pa.Table, expected: pa.Table) -> list[str]:
    """Human-readable differences between two tables of one read model (empty: equal)."""
    if actual.schema != expected.schema:
        return [f"schema {actual.schema} != {expected.schema}"]
    problems = []
    left, right = actual.to_pylist(), expected.to_pylist()
    if len(left) != len(right):
        problems.append(f"{len(left)} rows != {len(right)} rows")
    for row, other in zip(left, right, strict=False):
        changed = {k: (row[k], other[k]) for k in row if row[k] != other[k]}
        if changed:
            problems.append(f"row {row.get('order_id') or row.get('customer_id')}: {changed}")
    return problems


def assert_same_tables(
    actual: dict[str, pa.Table], expected: dict[str, pa.Table], label: str
) -> None:
    """Every read model equal, table for table (with the differing rows in the message)."""
    for name in READ_MODELS:
        problems = table_differences(actual[name], expected[name])
        assert not problems, f"{label}: {name} differs: " + "; ".join(problems[:10])
        assert actual[name].equals(expected[name]), f"{label}: {name} differs"


def one(frame: Any) -> dict[str, Any]:
    """The single row of a DataFrame as a dict."""
    assert len(frame) == 1, frame
    return dict(frame.iloc[0])
