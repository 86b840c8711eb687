"""Helpers shared by the service, cascade and Lab tests: labs with a fixed clock, and read spies."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cqrs_lab import domain as d
from cqrs_lab import eventlog
from cqrs_lab.determinism import fixed_clock, seeded_ids
from cqrs_lab.eventlog import EventLog
from cqrs_lab.lab import Lab

START = datetime(2026, 1, 1, tzinfo=UTC)
DELIVERY = "order service <- customer log"  # the Order service's entry in `Lab.lag()`


def delivery_lag(lab: Lab) -> int:
    """How many Customer events the Order service has not been delivered, as `Lab.lag()` says."""
    return lab.lag()[DELIVERY]


def new_lab(path: Path) -> Lab:
    """A fresh lab with the fixed clock and seeded ids every test uses."""
    return Lab.create(path, clock=fixed_clock(START), ids=seeded_ids(1))


def reopen(path: Path, seed: int = 2) -> Lab:
    """The same lab opened again, as a new process would (own clock, ids that do not repeat)."""
    return Lab.open(path, clock=fixed_clock(START + timedelta(days=seed)), ids=seeded_ids(seed))


def register(customer_id: str, name: str = "Ada", address: str = "1 Loop Rd") -> d.RegisterCustomer:
    return d.RegisterCustomer(customer_id=customer_id, name=name, address=address)


def place(order_id: str, customer_id: str, quantity: int = 1, price: str = "9.99") -> d.PlaceOrder:
    return d.PlaceOrder(
        order_id=order_id,
        customer_id=customer_id,
        product="widget",
        quantity=quantity,
        unit_price=Decimal(price),
    )


def payload(row: Any) -> dict[str, Any]:
    """The payload of an event (RecordedEvent or DataFrame row) as a dict."""
    return json.loads(row.payload)


def files_of(path: Path) -> dict[str, bytes]:
    """Every file under `path`, by relative name, with its bytes."""
    return {
        str(file.relative_to(path)): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


@dataclass
class ReadSpy:
    """Every read of any EventLog: which log, which method, its arguments, and the caller."""

    calls: list[tuple[str, str, dict[str, Any], str]] = field(default_factory=list)

    def of(self, log: EventLog) -> list[tuple[str, dict[str, Any], str]]:
        """The calls made on `log`: (method, keyword arguments, caller class)."""
        return [(m, kw, who) for name, m, kw, who in self.calls if name == str(log.path)]

    def clear(self) -> None:
        self.calls.clear()


def _caller_class() -> str:
    """The class of the first caller outside eventlog.py (what asked the log for events)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename in (eventlog.__file__, __file__):
        frame = frame.f_back  # type: ignore[assignment]
    owner = frame.f_locals.get("self") if frame is not None else None
    return type(owner).__name__ if owner is not None else "<function>"


def spy_on_reads(monkeypatch: pytest.MonkeyPatch) -> ReadSpy:
    """Wrap EventLog's reading methods so a test can see who reads which log, and how much."""
    spy = ReadSpy()
    for method in ("read", "scan", "files", "relation", "stream_version", "committed_position"):
        original = getattr(EventLog, method)

        def wrapper(self: EventLog, *args: Any, _original: Any = original, _m: str = method, **kw):
            spy.calls.append((str(self.path), _m, dict(kw), _caller_class()))
            return _original(self, *args, **kw)

        monkeypatch.setattr(EventLog, method, wrapper)
    return spy
