"""What the notebooks share: a fresh lab in a temporary folder, a small shop, a look at the files.

    >>> lab = new_lab("01")            # fixed clock and seeded ids: the same outputs on every run
    >>> small_shop(lab)                # three customers and some orders, through the real services
    >>> log_files(lab.customer_log)    # the Parquet files behind one service's log

Notebooks never write into the repository: every lab lives under the system's temp folder and is
removed when the kernel ends, also when it is killed (`scratch.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import duckdb
import pandas as pd

from cqrs_lab import domain as d
from cqrs_lab.determinism import fixed_clock, seeded_ids
from cqrs_lab.eventlog import EventLog
from cqrs_lab.lab import Lab
from cqrs_lab.scratch import scratch_folder
from cqrs_lab.services import SendResult

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday morning
TICK = timedelta(minutes=1)  # each commit happens one minute after the one before
LOG_FILES = """
SELECT
    parse_filename(filename) AS file,
    count(*) AS events,
    min(position) AS first_position,
    max(position) AS last_position
FROM read_parquet($files, filename = true)
GROUP BY filename
ORDER BY first_position
"""


def new_lab(name: str, *, seed: int = 1) -> Lab:
    """A new, empty lab in a temp folder; fixed clock (a minute per commit) and seeded ids."""
    return Lab.create(scratch_folder(name), clock=fixed_clock(START, TICK), ids=seeded_ids(seed))


def small_shop(lab: Lab) -> list[SendResult]:
    """Fill a lab with a small shop: three customers, five orders, one shipped; then sync."""
    results = lab.send_many(SMALL_SHOP_CUSTOMERS, actor="alice@shop")
    lab.sync()
    results += lab.send_many(SMALL_SHOP_ORDERS, actor="alice@shop")
    results.append(lab.send(d.ShipOrder(order_id="o-1"), actor="dave@warehouse"))
    lab.sync()
    return results


def log_files(log: EventLog) -> pd.DataFrame:
    """The Parquet files behind a log, read by DuckDB: name, how many events, which positions."""
    files = log.file_paths()
    if not files:
        return pd.DataFrame(columns=["file", "events", "first_position", "last_position"])
    with duckdb.connect(config={"autoinstall_known_extensions": False}) as con:
        return con.execute(LOG_FILES, {"files": files}).df()


def _order(
    order_id: str, customer_id: str, product: str, quantity: int, price: str
) -> d.PlaceOrder:
    return d.PlaceOrder(
        order_id=order_id,
        customer_id=customer_id,
        product=product,
        quantity=quantity,
        unit_price=Decimal(price),
    )


SMALL_SHOP_CUSTOMERS: list[d.Command] = [
    d.RegisterCustomer(customer_id="c-1", name="Ada Lovelace", address="1 Loop Rd"),
    d.RegisterCustomer(customer_id="c-2", name="Alan Turing", address="2 Stack St"),
    d.RegisterCustomer(customer_id="c-3", name="Grace Hopper", address="3 Heap Ave"),
]
SMALL_SHOP_ORDERS: list[d.Command] = [
    _order("o-1", "c-1", "Notebook", 3, "4.50"),
    _order("o-2", "c-1", "Pen", 10, "1.20"),
    _order("o-3", "c-2", "Backpack", 1, "39.90"),
    _order("o-4", "c-2", "Desk lamp", 1, "24.00"),
    _order("o-5", "c-3", "Headphones", 1, "59.00"),
]
