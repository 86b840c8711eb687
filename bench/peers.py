"""The peer: the `eventsourcing` library (9.x), set up to store the same events as cqrs_lab.

Two ways in, both measured:

* the **recorder** (``ApplicationRecorder.insert_events([StoredEvent, ...])``): the like-for-like
  peer of ``EventLog.append``. Both take events the caller has already decided, store them in one
  atomic, durable transaction, refuse a version clash (eventsourcing by its primary key
  ``(originator_id, originator_version)``, cqrs_lab by ``expected``) and give each event a global
  position (SQLite's rowid, cqrs_lab's position). The payload is JSON-encoded inside the timed
  region when cqrs_lab is given dicts, so both pay for encoding.
* the **application** (``Application.save(aggregate)`` of an ``Aggregate`` whose pending events were
  triggered before timing): what a user of the library writes; it also maps each event object to a
  stored event (its JSON transcoder), which cqrs_lab's append has no equivalent of.

Persistence: ``eventsourcing.sqlite`` on a file in the run's temp folder (WAL journal; the library
leaves ``synchronous`` at SQLite's default, FULL, so each commit fsyncs the WAL: durable) and
``eventsourcing.popo`` (plain Python objects in memory: not durable, a lower bound).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import workload
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory, StoredEvent
from eventsourcing.utils import Environment

SQLITE, POPO = "sqlite", "popo"
TOPIC = "bench.workload:{}"


def environment(kind: str, folder: Path) -> dict[str, str]:
    if kind == SQLITE:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(folder / "eventsourcing.sqlite"),
            "ORIGINATOR_ID_TYPE": "text",  # store "customer-7" as is, like cqrs_lab
        }
    return {"PERSISTENCE_MODULE": "eventsourcing.popo"}


@contextmanager
def recorder(kind: str, folder: Path) -> Iterator[ApplicationRecorder]:
    """An application recorder with its tables created; closed afterwards."""
    factory = InfrastructureFactory.construct(Environment("bench", environment(kind, folder)))
    try:
        yield factory.application_recorder()
    finally:
        factory.close()


def sqlite_settings(folder: Path) -> str:
    """journal_mode and synchronous of the peer's SQLite file, as its connections see them."""
    with sqlite3.connect(folder / "eventsourcing.sqlite") as con:
        journal = con.execute("PRAGMA journal_mode").fetchone()[0]
        # synchronous is per connection; the library does not set it, so it is the default.
        synchronous = con.execute("PRAGMA synchronous").fetchone()[0]
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return f"journal_mode={journal}, synchronous={names.get(synchronous, synchronous)}"


def stored_event(i: int, state: bytes, *, originator: str | None = None, version: int = 0) -> Any:
    """Event `i` of the workload as a StoredEvent (or on another stream/version if given)."""
    return StoredEvent(
        originator_id=originator or workload.stream_id(i),
        originator_version=version or workload.version(i),
        topic=TOPIC.format(workload.event_type(i)),
        state=state,
    )


def stored_events(start: int, count: int) -> list[StoredEvent]:
    """Events start..start+count-1 with their payloads already encoded."""
    return [stored_event(i, workload.payload_json(i).encode()) for i in range(start, start + count)]


# --- the application API --------------------------------------------------------------------------


class Customer(Aggregate):
    """The workload's stream as an eventsourcing aggregate."""

    @event("Registered")
    def __init__(self, *, address: str, credit_limit: int, customer_id: int, name: str) -> None:
        self.address, self.credit_limit = address, credit_limit
        self.customer_id, self.name = customer_id, name

    @event("Renamed")
    def rename(self, *, address: str, credit_limit: int, customer_id: int, name: str) -> None:
        self.address, self.credit_limit = address, credit_limit
        self.customer_id, self.name = customer_id, name


class Customers(Application):  # type: ignore[type-arg]
    """An application with no behaviour of its own: we only call `save`."""


def application(kind: str, folder: Path) -> Customers:
    return Customers(env=environment(kind, folder))


def customers(start: int, count: int) -> list[Customer]:
    """Aggregates holding events start..start+count-1 as pending (untimed) events."""
    aggregates: list[Customer] = []
    for i in range(start, start + count):
        if workload.version(i) == 1:
            aggregates.append(Customer(**workload.payload(i)))
        else:
            aggregates[-1].rename(**workload.payload(i))
    return aggregates


# --- scanning -------------------------------------------------------------------------------------

SCAN_SQL = """
SELECT count(*),
       count(DISTINCT originator_id),
       sum(length(state))
FROM stored_events
"""


def sqlite_scan(folder: Path) -> tuple[int, int, int]:
    """The scan query of the eventlog benchmark, in the peer's SQLite file (as an analyst would)."""
    with sqlite3.connect(folder / "eventsourcing.sqlite") as con:
        return con.execute(SCAN_SQL).fetchone()  # type: ignore[no-any-return]
