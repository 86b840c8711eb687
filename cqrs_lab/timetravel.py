"""Time travel: the read models as they were at any point of the history, and what changed.

A point in history is a *cut*: a position in each service's log. A cut at a time takes, in each
log, the events recorded up to that time; since both services share one clock and an effect is
never recorded before its cause, that cut is consistent (no cancellation without its deletion).
A cut at a position counts events in the order `lab.events()` lists them (by time, Customer log
first on ties), so position 1, 2, 3, ... steps through the whole lab one event at a time.

`AsOf` is a read-only view with the same tables and `.sql()`, folded by the same code as the
live read models, only stopping at the cut. Far into a long history it starts from the nearest
read-model snapshot before the cut (`snapshots.py`) and folds only the events after it; the first
trip past the last snapshot leaves new ones every `snapshots.EVERY` events on its way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from cqrs_lab import display, pyfold, snapshots
from cqrs_lab.eventlog import EventLog, RecordedEvent
from cqrs_lab.readstore import KEYS, QueryError, ReadStore
from cqrs_lab.streamindex import StreamIndex

CUT_AT_TIME = """
SELECT coalesce(max(position), 0)
FROM read_parquet($files)
WHERE recorded_at <= $time
"""
# The first $n events in `lab.events()` order (time, then Customer before Order, then position)
# without sorting them: count the events at each distinct time, find the time at which the count
# passes $n, and take every event before it plus the first ones at it (Customer's first).
CUT_AT_SEQUENCE = """
SELECT customer_before + least($n - before, customer) AS customer,
       order_before + least(greatest($n - before - customer, 0), order_) AS order_
FROM (
    SELECT customer, order_,
           sum(customer + order_) OVER w - customer - order_ AS before,
           sum(customer) OVER w - customer AS customer_before,
           sum(order_) OVER w - order_ AS order_before
    FROM (
        SELECT recorded_at,
               count(*) FILTER (WHERE service = 'customer') AS customer,
               count(*) FILTER (WHERE service = 'order') AS order_
        FROM ({union})
        GROUP BY recorded_at
    )
    WINDOW w AS (ORDER BY recorded_at ROWS UNBOUNDED PRECEDING)
    QUALIFY before < $n
)
ORDER BY before DESC
LIMIT 1
"""
CHAIN_COST = 5  # measured: 61 s to fold 5 M events on in steps of 250,000 vs 12 s from the start
# Consistent cuts every `$every` events of the lab's order (each a prefix of every later cut).
SEQUENCE_CUTS = """
SELECT n, customer, n - customer AS order_
FROM (
    SELECT row_number() OVER w AS n,
           sum(CASE WHEN service = 'customer' THEN 1 ELSE 0 END) OVER w AS customer
    FROM ({union})
    WINDOW w AS (ORDER BY recorded_at, service, position ROWS UNBOUNDED PRECEDING)
)
WHERE n % $every = 0
  AND n > $start
ORDER BY n
"""
LOG_PREFIX = """
SELECT '{name}' AS service, recorded_at, position
FROM read_parquet(${name}_files)
WHERE position <= ${name}_upto
"""
LOG_TIMES = """
SELECT '{name}' AS service, recorded_at, position
FROM read_parquet(${name}_files)
"""
STREAM_SQL = """
SELECT *
FROM read_parquet($files)
WHERE stream_id = $stream_id
ORDER BY position
"""
DIFF_SQL = """
SELECT coalesce(a.{key}, b.{key}) AS {key},
       CASE
           WHEN a.{key} IS NULL THEN 'added'
           WHEN b.{key} IS NULL THEN 'removed'
           ELSE 'changed'
       END AS change,
       to_json(a) AS before,
       to_json(b) AS after
FROM before_rows AS a
FULL OUTER JOIN after_rows AS b ON a.{key} = b.{key}
WHERE a IS DISTINCT FROM b
ORDER BY 1
"""


def cut_at_time(
    con: duckdb.DuckDBPyConnection, logs: Mapping[str, EventLog], time: datetime
) -> dict[str, int]:
    """Each log's last position recorded at or before `time`."""
    cut = {}
    for name, log in logs.items():
        files = log.file_paths()
        row = con.execute(CUT_AT_TIME, {"files": files, "time": time}).fetchall() if files else []
        cut[name] = int(row[0][0]) if row else 0
    return cut


def cut_at_position(
    con: duckdb.DuckDBPyConnection, logs: Mapping[str, EventLog], n: int
) -> dict[str, int]:
    """The cut after the first `n` events of the lab, in `lab.events()` order."""
    parts: list[str] = []
    params: dict[str, Any] = {"n": max(0, n)}
    for name, log in logs.items():
        files = log.file_paths()
        if files:
            parts.append(LOG_TIMES.format(name=name))
            params[f"{name}_files"] = files
    if not parts:
        return dict.fromkeys(logs, 0)
    union = "UNION ALL".join(parts)
    found = con.execute(CUT_AT_SEQUENCE.format(union=union), params).fetchall()
    customer, order = found[0] if found else (0, 0)
    return {"customer": int(customer), "order": int(order)}


def prepare_snapshots(
    con: duckdb.DuckDBPyConnection, lab: Path, logs: Mapping[str, EventLog], cut: Mapping[str, int]
) -> snapshots.Snapshot | None:
    """The snapshot to fold `cut` from: the nearest one, after making one at the last multiple of
    `snapshots.EVERY` events before `cut` if that is further on. None: fold from the start.

    From the nearest snapshot on, one is left every `EVERY` events; but folding on from a
    snapshot costs about `CHAIN_COST` times more per event than a fold from the first event onto
    empty tables, so a long gap is bridged by that fold instead, leaving one snapshot.
    """
    total = sum(cut.values())
    if total < snapshots.EVERY:
        return None
    start = snapshots.nearest(con, lab, logs, cut)
    done = start.events if start is not None else 0
    if total - done < snapshots.EVERY:
        return start
    cuts = sequence_cuts(con, logs, cut, after=done)
    if cuts and CHAIN_COST * (sum(cuts[-1].values()) - done) > sum(cuts[-1].values()):
        return _fill(lab, logs, None, cuts[-1:]) or start
    return _fill(lab, logs, start, cuts) or start


def sequence_cuts(
    con: duckdb.DuckDBPyConnection, logs: Mapping[str, EventLog], cut: Mapping[str, int], after: int
) -> list[dict[str, int]]:
    """The consistent cuts inside `cut` after every `snapshots.EVERY` events, past `after`."""
    parts: list[str] = []
    params: dict[str, Any] = {"every": snapshots.EVERY, "start": after}
    for name, log in logs.items():
        files = log.file_paths(upto=cut[name])
        if files and cut[name]:
            parts.append(LOG_PREFIX.format(name=name))
            params |= {f"{name}_files": files, f"{name}_upto": cut[name]}
    if not parts:
        return []
    query = SEQUENCE_CUTS.format(union="UNION ALL".join(parts))
    rows = con.execute(query, params).fetchall()
    return [{"customer": int(customer), "order": int(order)} for _, customer, order in rows]


def _fill(
    lab: Path,
    logs: Mapping[str, EventLog],
    start: snapshots.Snapshot | None,
    cuts: list[dict[str, int]],
) -> snapshots.Snapshot | None:
    """Fold on from `start` through `cuts`, leaving a snapshot at each; the last one made."""
    if not cuts:
        return None
    store = ReadStore(lab, logs, upto=start.cut if start is not None else dict.fromkeys(logs, 0))
    made = None
    try:
        if start is not None:
            snapshots.load(store.con, start)
            store.set_checkpoints(start.cut)
        for cut in cuts:
            store.upto = cut
            store.catch_up()
            made = snapshots.write(store.con, lab, logs, cut)
    finally:
        store.close()
    return made


class AsOf:
    """The read models as of a cut: same tables, same `.sql()`, read-only."""

    def __init__(self, lab: Path, logs: Mapping[str, EventLog], cut: Mapping[str, int], label: str):
        self.cut, self.label = dict(cut), label
        self.store = ReadStore(lab, logs, upto=self.cut)
        start = prepare_snapshots(self.store.con, lab, logs, self.cut)
        if start is None or not snapshots.fold_on(self.store.con, logs, start, self.cut):
            self.store.catch_up()

    def sql(self, query: str, params: Mapping[str, Any] | list[Any] | None = None) -> pd.DataFrame:
        """A read-only query on the read models as they were."""
        return self.store.sql(query, params)

    def table(self, name: str) -> pd.DataFrame:
        """A whole read model as it was, ordered by its key."""
        frame: pd.DataFrame = self.store.table(name).to_pandas()
        return frame

    def close(self) -> None:
        """Free the view's database."""
        self.store.close()

    def __enter__(self) -> AsOf:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __str__(self) -> str:
        where = ", ".join(f"{log} log up to #{position}" for log, position in self.cut.items())
        return f"AsOf({self.label}: {where})"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        cut = [(log, position) for log, position in self.cut.items()]
        return (
            f"<div><b>Read models {escape(self.label)}</b> (query with <code>.sql(...)</code>)"
            f"{display.table(('log', 'up to position'), cut)}</div>"
        )


def history(con: duckdb.DuckDBPyConnection, index: StreamIndex, stream_id: str) -> pd.DataFrame:
    """One entity's state after each of its events, oldest first (read through the stream index)."""
    found = index.stream(con, stream_id)
    if not found.num_rows and not index.log.position:
        return pd.DataFrame()
    tables, rows = pyfold.empty(), []
    for event in _events(found):
        pyfold.apply(tables, event)
        state = _row_of(tables, event)
        when = {"position": event.position, "recorded_at": event.recorded_at}
        rows.append({**when, "event_type": event.event_type, "actor": event.actor, **state})
    return pd.DataFrame(rows)


def _events(table: pa.Table) -> list[RecordedEvent]:
    """The index's rows as events (the lineage ids and hash a history does not show left empty)."""
    blank: dict[str, Any] = dict.fromkeys(
        ("event_id", "command_id", "correlation_id", "causation_id", "hash"), ""
    )
    return [RecordedEvent(**row, **blank) for row in table.to_pylist()]


def diff(before: AsOf, after: AsOf, table: str) -> pd.DataFrame:
    """Which rows of a read model changed between two points: one row per changed column."""
    if table not in KEYS:
        raise QueryError(f"no read model {table!r}; known: {', '.join(KEYS)}")
    scratch = duckdb.connect(config={"enable_external_access": False})
    scratch.register("before_rows", before.store.table(table))
    scratch.register("after_rows", after.store.table(table))
    changes = scratch.execute(DIFF_SQL.format(key=KEYS[table])).fetchall()
    scratch.close()
    rows = []
    for key, change, old_json, new_json in changes:
        old, new = json.loads(old_json), json.loads(new_json)
        if change != "changed":  # a whole row came or went: show what it held
            shown = new if change == "added" else old
            summary = ", ".join(f"{c}={v}" for c, v in shown.items() if c not in _BOOKKEEPING)
            was, now = (None, summary) if change == "added" else (summary, None)
            rows.append(
                {
                    KEYS[table]: key,
                    "change": change,
                    "column": "*",
                    "before": was,
                    "after": now,
                }
            )
            continue
        for column in old:
            if column not in _BOOKKEEPING and old[column] != new[column]:
                rows.append({KEYS[table]: key, "change": change, "column": column,
                             "before": old[column], "after": new[column]})  # fmt: skip
    return pd.DataFrame(rows, columns=[KEYS[table], "change", "column", "before", "after"])


_BOOKKEEPING = ("updated_at", "version")


def _row_of(tables: pyfold.Tables, event: Any) -> dict[str, Any]:
    data = event.data
    if event.stream_type == "Customer":
        return dict(tables["customers"].get(data.get("customer_id"), {}))
    if event.stream_type == "Order":
        row = dict(tables["orders"].get(data.get("order_id"), {}))
        row.pop("customer_name", None)  # the customer is another stream's history
        return row
    return {"payload": event.payload}
