"""Read-model snapshots: the tables as they were at a cut, kept as Parquet so time travel folds
only what came after the nearest one.

A fold of half of a 10^7-event history takes seconds; reading the tables as they were at a cut
close by, and folding the few events after it, takes a fraction of that. `lab.as_of` leaves a
snapshot every `EVERY` events of the history on its way to the cut it was asked for (the first
trip far into the past pays for them, later ones do not), in `<lab>/read/snapshots/`.

A snapshot is a folder `<customer position>-<order position>/` holding `customers.parquet`,
`orders.parquet` and `cut.json`: each log's position and the hash of the event there. The log's
hash chain makes that hash stand for the whole prefix, so a snapshot is used only while both
hashes still match the logs (a log replaced by another is detected, the snapshot removed). It is
written by the package into a temporary folder and published by renaming the folder, which fails
if another process published the same one first: readers never see half a snapshot. Snapshots
never change what a query answers; a test compares time travel with and without them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from cqrs_lab import projections as p
from cqrs_lab.eventlog import EventLog

EVERY = 150_000  # events between two snapshots: ~1 s of folding on top of one at 10^7 events
FORMAT = 1  # the read models' shape; a snapshot of another shape is ignored
TABLES = ("customers", "orders")
MANIFEST = "cut.json"
BATCH_ROWS = 128 * 1024
HASH_AT = """
SELECT lower(hex(hash))
FROM read_parquet($files)
WHERE position = $position
"""
TABLE_ROWS = """
SELECT *
FROM {table}
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The read models at a cut (a position per log), in a folder of Parquet files."""

    path: Path
    cut: Mapping[str, int]
    hashes: Mapping[str, str]

    @property
    def events(self) -> int:
        """How many events of history it holds (both logs)."""
        return sum(self.cut.values())

    def file(self, table: str) -> str:
        """The Parquet file of one read model."""
        return str(self.path / f"{table}.parquet")

    def covers(self, cut: Mapping[str, int]) -> bool:
        """True if it is a prefix of `cut` in every log, so folding on from it reaches `cut`."""
        return all(self.cut.get(name, 0) <= position for name, position in cut.items())


def folder(lab: Path) -> Path:
    """Where a lab's snapshots live (inside the lab, so queries of the sandbox may read them)."""
    return lab / "read" / "snapshots"


def found(lab: Path) -> list[Snapshot]:
    """The published snapshots of this shape, oldest first (unreadable ones are skipped)."""
    snapshots = []
    for path in sorted(folder(lab).glob("[0-9]*-[0-9]*")):
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if manifest.get("format") == FORMAT:
            snapshots.append(Snapshot(path, manifest["cut"], manifest["hashes"]))
    return sorted(snapshots, key=lambda snapshot: snapshot.events)


def nearest(
    con: duckdb.DuckDBPyConnection, lab: Path, logs: Mapping[str, EventLog], cut: Mapping[str, int]
) -> Snapshot | None:
    """The latest snapshot at or before `cut` that still matches the logs; stale ones removed."""
    for snapshot in reversed(found(lab)):
        if not snapshot.covers(cut):
            continue
        if matches(con, logs, snapshot):
            return snapshot
        shutil.rmtree(snapshot.path, ignore_errors=True)  # made from a log that is gone
    return None


def matches(
    con: duckdb.DuckDBPyConnection, logs: Mapping[str, EventLog], snapshot: Snapshot
) -> bool:
    """True if each log still holds, at the snapshot's position, the event it was made from."""
    return all(
        hash_at(con, log, snapshot.cut.get(name, 0)) == snapshot.hashes.get(name)
        for name, log in logs.items()
    )


def hash_at(con: duckdb.DuckDBPyConnection, log: EventLog, position: int) -> str:
    """The hash of the event at `position` ("" before the first event or past the end)."""
    if position <= 0:
        return ""
    files = log.file_paths(after=position - 1, upto=position)
    if not files:
        return ""
    rows = con.execute(HASH_AT, {"files": files, "position": position}).fetchall()
    return str(rows[0][0]) if rows else ""


def write(
    con: duckdb.DuckDBPyConnection, lab: Path, logs: Mapping[str, EventLog], cut: Mapping[str, int]
) -> Snapshot:
    """Publish the tables of `con` (folded up to `cut`) as a snapshot, unless one exists."""
    hashes = {name: hash_at(con, log, cut.get(name, 0)) for name, log in logs.items()}
    target = folder(lab) / "-".join(f"{cut.get(name, 0):012d}" for name in logs)
    snapshot = Snapshot(target, dict(cut), hashes)
    if (target / MANIFEST).is_file():
        return snapshot
    folder(lab).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".snapshot-", dir=folder(lab)))
    try:
        for table in TABLES:
            _write_table(con, table, scratch / f"{table}.parquet")
        manifest = {"format": FORMAT, "cut": dict(cut), "hashes": hashes}
        (scratch / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
        os.rename(scratch, target)  # fails if another process published it first: fine
    except OSError:
        if not (target / MANIFEST).is_file():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return snapshot


def _write_table(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """Stream one read model into a Parquet file, a batch at a time (bounded memory)."""
    reader = con.sql(TABLE_ROWS.format(table=table)).to_arrow_reader(BATCH_ROWS)
    with pq.ParquetWriter(path, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch, row_group_size=BATCH_ROWS)


# --- the read models at a cut: a snapshot's rows, the events after it folded on top ----------

SNAPSHOT_VIEWS = """
CREATE OR REPLACE VIEW snapshot_customers AS
SELECT *
FROM read_parquet(getvariable('snapshot_customers'));
CREATE OR REPLACE VIEW snapshot_orders AS
SELECT *
FROM read_parquet(getvariable('snapshot_orders'));
"""
CHANGED_CUSTOMERS = """
CREATE OR REPLACE TEMP TABLE changed_customers AS
SELECT d.customer_id,
       coalesce(d.name, c.name) AS name,
       coalesce(d.address, c.address) AS address,
       CASE WHEN d.deleted OR c.status = 'deleted' THEN 'deleted' ELSE 'active' END AS status,
       coalesce(c.registered_at, d.registered_at) AS registered_at,
       coalesce(d.deleted_at, c.deleted_at) AS deleted_at,
       d.updated_at,
       d.version
FROM customer_delta AS d
LEFT JOIN snapshot_customers AS c USING (customer_id)
"""
CUSTOMERS_VIEW = """
CREATE OR REPLACE VIEW customers AS
SELECT *
FROM snapshot_customers
WHERE customer_id NOT IN (SELECT customer_id FROM changed_customers)
UNION ALL
SELECT *
FROM changed_customers
"""
# The snapshot's orders the delta touches: its own, and those of customers it renamed (their
# denormalised name), read in one pass over the snapshot file instead of one per join: time
# travel to mid-history of 10^7 events (2.2 M orders in the snapshot) took 0.85 s of CPU
# instead of 0.97-1.00 s.
TOUCHED_ORDERS = """
CREATE OR REPLACE TEMP TABLE touched_orders AS
SELECT *
FROM snapshot_orders
WHERE order_id IN (SELECT order_id FROM order_delta)
   OR customer_id IN (SELECT customer_id FROM customer_delta WHERE renamed)
"""
# Orders the delta touched, and orders of customers it renamed (their denormalised name).
CHANGED_ORDERS = """
CREATE OR REPLACE TEMP TABLE changed_orders AS
SELECT d.order_id,
       coalesce(o.customer_id, d.customer_id) AS customer_id,
       CASE
           WHEN o.order_id IS NULL THEN coalesce(cc.name, sc.name)
           ELSE coalesce(r.name, o.customer_name)
       END AS customer_name,
       coalesce(o.product, d.product) AS product,
       coalesce(o.quantity, d.quantity) AS quantity,
       coalesce(o.unit_price, d.unit_price) AS unit_price,
       coalesce(o.amount, CAST(d.quantity * d.unit_price AS DECIMAL(18, 2))) AS amount,
       d.status,
       coalesce(o.placed_at, d.placed_at) AS placed_at,
       coalesce(d.shipped_at, o.shipped_at) AS shipped_at,
       coalesce(d.cancelled_at, o.cancelled_at) AS cancelled_at,
       coalesce(d.cancel_reason, o.cancel_reason) AS cancel_reason,
       d.updated_at,
       d.version
FROM order_delta AS d
LEFT JOIN touched_orders AS o USING (order_id)
LEFT JOIN changed_customers AS cc ON cc.customer_id = d.customer_id
LEFT JOIN snapshot_customers AS sc ON sc.customer_id = d.customer_id
LEFT JOIN customer_delta AS r ON r.customer_id = o.customer_id AND r.renamed
UNION ALL
SELECT o.* REPLACE (r.name AS customer_name)
FROM touched_orders AS o
JOIN customer_delta AS r USING (customer_id)
WHERE r.renamed
  AND o.order_id NOT IN (SELECT order_id FROM order_delta)
"""
ORDERS_VIEW = """
CREATE OR REPLACE VIEW orders AS
SELECT *
FROM snapshot_orders
WHERE order_id NOT IN (SELECT order_id FROM changed_orders)
UNION ALL
SELECT *
FROM changed_orders
"""
LOAD_TABLE = """
INSERT INTO {table}
SELECT *
FROM read_parquet($file)
"""


def fold_on(
    con: duckdb.DuckDBPyConnection,
    logs: Mapping[str, EventLog],
    snapshot: Snapshot,
    cut: Mapping[str, int],
) -> bool:
    """Make `customers` and `orders` in `con` views of the read models at `cut`: the snapshot's
    rows, with the events after it folded on top (the rows they change kept in small tables).

    False if a log has no file to fold from (nothing to do this way: fold the plain way).
    """
    params = {}
    for name, log in logs.items():
        after, upto = snapshot.cut.get(name, 0), cut[name]
        files = log.file_paths(after=after, upto=upto) if upto > after else []
        files = files or log.file_paths(after=max(0, after - 1), upto=max(after, 1))
        if not files:
            return False
        params[name] = {"files": files, "after": after, "upto": upto}
    p.drop_schema(con)
    for table in TABLES:
        con.execute(f"SET VARIABLE snapshot_{table} = ?", [snapshot.file(table)])  # our names
    con.execute(SNAPSHOT_VIEWS)
    for name, (delta, *steps) in (
        ("customer", (p.CUSTOMER_DELTA, CHANGED_CUSTOMERS, CUSTOMERS_VIEW)),
        ("order", (p.ORDER_DELTA, TOUCHED_ORDERS, CHANGED_ORDERS, ORDERS_VIEW)),
    ):
        con.execute(delta, params[name])
        for step in steps:
            con.execute(step)
    con.execute(p.SUMMARY_VIEW)
    return True


def load(con: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> None:
    """Fill the (empty) read-model tables of `con` with a snapshot's rows."""
    for table in TABLES:
        con.execute(LOAD_TABLE.format(table=table), {"file": snapshot.file(table)})
