"""How results look in JupyterLab: small HTML tables, built the same way for every kind of result.

Plain text (`__str__`/`__repr__`) stays each class's own; this module only draws HTML, escaping
every value, with no random ids, so stored notebook outputs stay byte-stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Protocol

EVENT_HEADERS = ("position", "event", "stream", "version", "actor", "payload")


class EventRow(Protocol):
    """What an event row needs to be drawn (RecordedEvent has it)."""

    @property
    def position(self) -> int: ...
    @property
    def event_type(self) -> str: ...
    @property
    def stream_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def actor(self) -> str: ...
    @property
    def payload(self) -> str: ...


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An HTML table; every cell escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def events_table(events: Iterable[EventRow]) -> str:
    """Events as an HTML table: position, type, stream, version, actor, payload."""
    rows = [(e.position, e.event_type, e.stream_id, e.version, e.actor, e.payload) for e in events]
    return table(EVENT_HEADERS, rows)


def status(text: str, colour: str) -> str:
    """A word in colour (accepted green, rejected red, ...)."""
    return f"<span style='color:{colour}'>{escape(text)}</span>"
