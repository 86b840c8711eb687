"""The facade notebooks and the CLI call: a lab is a folder holding both services' stores.

    >>> lab = Lab.create("/tmp/shop", clock=fixed_clock(datetime(2026, 1, 1, tzinfo=UTC)))
    >>> lab.send(RegisterCustomer(customer_id="c-1", name="Ada", address="1 Loop Rd"))
    RegisterCustomer: accepted
      #1 CustomerRegistered customer-c-1 v1 {"address":"1 Loop Rd","customer_id":"c-1",...}
    >>> lab.sync()          # deliver Customer events to the Order service (cascades included)

Folder layout: `customer/` and `order/` are event logs (see `eventlog.py`); the Order service's
subscription to the Customer log keeps its checkpoint in `order/subscriptions/`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from cqrs_lab import display
from cqrs_lab import domain as d
from cqrs_lab.determinism import Clock, IdGenerator, random_ids
from cqrs_lab.errors import InvalidEventError, LogNotFoundError
from cqrs_lab.eventlog import EventLog
from cqrs_lab.messaging import DeliveryReport, Subscription, deliver
from cqrs_lab.projections import CatchUp
from cqrs_lab.readstore import ReadStore
from cqrs_lab.services import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    CustomerService,
    Envelope,
    OrderService,
    SendResult,
    Service,
)
from cqrs_lab.timetravel import AsOf, cut_at_position, cut_at_time, diff, history
from cqrs_lab.tracing import Trace

SERVICES = (d.CUSTOMER_SERVICE, d.ORDER_SERVICE)
EVENT_COLUMNS = """
    service, position, recorded_at, stream_type, stream_id, version, event_type, payload, actor,
    event_id, command_id, correlation_id, causation_id, schema_version, lower(hex(hash)) AS hash
"""
EVENTS_SQL = """
SELECT {columns}
FROM ({union})
WHERE ($service IS NULL OR service = $service)
  AND ($stream_id IS NULL OR stream_id = $stream_id)
  AND ($event_type IS NULL OR event_type = $event_type)
  AND ($correlation_id IS NULL OR correlation_id = $correlation_id)
ORDER BY recorded_at, service, position
"""


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What `Lab.sync()` delivered, what the policies did, and the lag it closed."""

    delivery: DeliveryReport
    read_models: CatchUp
    lag_before: dict[str, int]
    lag_after: dict[str, int]

    def __str__(self) -> str:
        r = self.delivery
        lag = ", ".join(f"{k}: {v} -> {self.lag_after[k]}" for k, v in self.lag_before.items())
        return (
            f"delivered {r.delivered} Customer events to the Order service; commands issued: "
            f"{r.count(ACCEPTED)} accepted, {r.count(REJECTED)} rejected, "
            f"{r.count(DUPLICATE)} duplicates skipped\n{self.read_models}\nlag {lag}"
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        r = self.delivery
        issued = (
            f"{r.count(ACCEPTED)} accepted, {r.count(REJECTED)} rejected, "
            f"{r.count(DUPLICATE)} duplicates skipped"
        )
        lag = [(name, before, self.lag_after[name]) for name, before in self.lag_before.items()]
        headers = ("consumer / read model", "behind before", "behind after")
        return (
            f"<div><b>sync</b>: delivered {r.delivered} Customer events to the Order service; "
            f"commands issued: {escape(issued)}<br/>{escape(str(self.read_models))}"
            f"{display.table(headers, lag)}</div>"
        )


class Lab:
    """Two event-sourced services, Customer and Order, in one folder; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None,
        ids: IdGenerator | None,
        persistent: bool = False,
        memory_limit: str = "1GB",
    ) -> None:
        self.path = path
        self.ids: IdGenerator = ids or random_ids
        self.customer_log = EventLog.open(path / d.CUSTOMER_SERVICE, clock=clock, ids=self.ids)
        self.order_log = EventLog.open(path / d.ORDER_SERVICE, clock=clock, ids=self.ids)
        self.customer = CustomerService(self.customer_log)
        self.order = OrderService(self.order_log)
        folder = path / d.ORDER_SERVICE / "subscriptions"
        self.subscription = Subscription(self.customer_log, folder, "customer-events")
        logs = {d.CUSTOMER_SERVICE: self.customer_log, d.ORDER_SERVICE: self.order_log}
        self.read = ReadStore(path, logs, persistent=persistent, memory_limit=memory_limit)
        self.con = self.read.con
        self.read.catch_up()

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        persistent: bool = False,
    ) -> Lab:
        """Create a new lab (an empty folder, or a new one) with an empty log per service."""
        path = Path(path)
        if any((path / name).exists() for name in SERVICES):
            raise InvalidEventError(f"{path} already holds a lab; use Lab.open")
        for name in SERVICES:
            EventLog.create(path / name).close()
        return cls(path, clock=clock, ids=ids, persistent=persistent)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        persistent: bool = False,
        memory_limit: str = "1GB",
    ) -> Lab:
        """Open an existing lab folder; `persistent=True` keeps the read models in a file."""
        path = Path(path)
        if not all((path / name / "HEAD").is_file() for name in SERVICES):
            raise LogNotFoundError(f"no lab at {path} (expected customer/ and order/ logs)")
        return cls(path, clock=clock, ids=ids, persistent=persistent, memory_limit=memory_limit)

    def close(self) -> None:
        """Release files and the DuckDB connection."""
        self.customer_log.close()
        self.order_log.close()
        self.read.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab({str(self.path)!r})"

    # --- the command side ------------------------------------------------------------------------

    def send(
        self, command: d.Command, *, actor: str = "learner", command_id: str = ""
    ) -> SendResult:
        """Handle one command in the service that owns it; returns accepted/rejected/duplicate.

        `command_id` makes a send idempotent: sending the same id again changes nothing.
        """
        return self.send_many([command], actor=actor, command_ids=[command_id])[0]

    def send_many(
        self,
        commands: Sequence[d.Command],
        *,
        actor: str | Sequence[str] = "learner",
        command_ids: Sequence[str] = (),
    ) -> list[SendResult]:
        """Handle commands in order, each service's share as one atomic append (the bulk path).

        `actor` is one actor for all, or one per command.
        """
        actors = [actor] * len(commands) if isinstance(actor, str) else list(actor)
        results: list[SendResult | None] = [None] * len(commands)
        by_service: dict[str, list[tuple[int, Envelope]]] = {name: [] for name in SERVICES}
        for index, command in enumerate(commands):
            d.check_field_types(command)
            given = command_ids[index] if index < len(command_ids) else ""
            command_id = given or self._fresh_command_id()
            envelope = Envelope(
                command=command,
                command_id=command_id,
                correlation_id=command_id,
                causation_id=command_id,
                actor=actors[index],
            )
            by_service[d.SERVICE_OF_COMMAND[type(command)]].append((index, envelope))
        for name, batch in by_service.items():
            handled = self._service(name).handle_batch([e for _, e in batch]) if batch else []
            for (index, _), result in zip(batch, handled, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _fresh_command_id(self) -> str:
        """A new command id; an id generator that repeats used ids is a setup error, said loudly."""
        command_id = self.ids()
        if command_id in self.customer.handled or command_id in self.order.handled:
            raise d.InvalidCommandError(
                f"the lab's id generator produced {command_id!r}, an id this lab already used "
                "(was a seeded generator reused when reopening the lab? give it another seed)"
            )
        return command_id

    def sync(self) -> SyncReport:
        """Deliver pending messages (replica updates, cascades), then catch the read models up.

        Until this runs, the read side shows the old state: eventual consistency you can see.
        """
        lag_before = self.lag()
        delivery = deliver(self.subscription, self.order)
        return SyncReport(delivery, self.read.catch_up(), lag_before, self.lag())

    def rebuild(self) -> CatchUp:
        """Drop every read model and fold it again from the whole history."""
        return self.read.rebuild()

    def lag(self) -> dict[str, int]:
        """How many events each consumer and read model is behind the log it reads."""
        return {"order service <- customer log": self.subscription.lag(), **self.read.lag()}

    def sql(self, query: str, params: Mapping[str, Any] | list[Any] | None = None) -> pd.DataFrame:
        """Run a read-only SQL query on the read models; values go in `params`, never the text.

            >>> lab.sql("SELECT name FROM customers WHERE customer_id = $id", {"id": "c-1"})

        Tables: customers, orders, customer_order_summary, events.
        """
        return self.read.sql(query, params)

    # --- time travel -----------------------------------------------------------------------------

    def as_of(self, *, position: int | None = None, time: datetime | None = None) -> AsOf:
        """The read models as they were, with the same tables and `.sql()`.

            >>> lab.as_of(time=datetime(2026, 3, 1, tzinfo=UTC)).sql("SELECT count(*) FROM orders")

        `position` n means "after the first n events of `lab.events()`"; `time` takes, in each
        service's log, the events recorded up to then (a consistent cut of both services).
        """
        logs = self.read.logs
        if (position is None) == (time is None):
            raise InvalidEventError("as_of needs exactly one of position= or time=")
        if time is not None:
            return AsOf(self.path, logs, cut_at_time(self.con, logs, time), f"as of {time}")
        assert position is not None
        cut = cut_at_position(self.con, logs, position)
        return AsOf(self.path, logs, cut, f"as of event {position}")

    def history(self, stream_id: str) -> pd.DataFrame:
        """One entity's state after each of its events (e.g. "customer-c-1", "order-o-7")."""
        log = d.ORDER_SERVICE if stream_id.startswith("order-") else d.CUSTOMER_SERVICE
        return history(self.con, self.read.streams[log], stream_id)

    def diff(self, before: AsOf, after: AsOf, table: str = "orders") -> pd.DataFrame:
        """Which rows of a read model changed between two points, column by column."""
        return diff(before, after, table)

    def _service(self, name: str) -> Service:
        return self.customer if name == d.CUSTOMER_SERVICE else self.order

    # --- looking at the history ------------------------------------------------------------------

    def events(
        self,
        *,
        service: str | None = None,
        stream_id: str | None = None,
        event_type: str | None = None,
        correlation_id: str | None = None,
    ) -> pd.DataFrame:
        """The events of both services (or one) as a DataFrame, oldest first."""
        union, params = self._union()
        if not union:
            return pd.DataFrame(columns=[c.split(" AS ")[-1].strip() for c in _columns()])
        sql = EVENTS_SQL.format(columns=EVENT_COLUMNS, union=union)
        params |= {
            "service": service,
            "stream_id": stream_id,
            "event_type": event_type,
            "correlation_id": correlation_id,
        }
        return self.con.execute(sql, params).df()

    def trace(self, correlation_id: str) -> Trace:
        """Every event one command caused, across both services, with a mermaid graph."""
        return Trace(correlation_id, self.events(correlation_id=correlation_id))

    def _union(self) -> tuple[str, dict[str, Any]]:
        parts, params = [], {}
        for name, log in (
            (d.CUSTOMER_SERVICE, self.customer_log),
            (d.ORDER_SERVICE, self.order_log),
        ):
            files = log.file_paths()
            if files:
                parts.append(f"SELECT '{name}' AS service, * FROM read_parquet(${name}_files)")
                params[f"{name}_files"] = files
        return "\nUNION ALL\n".join(parts), params


def _columns() -> list[str]:
    return [column.strip() for column in EVENT_COLUMNS.split(",")]
