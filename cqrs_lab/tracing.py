"""Tracing a cascade: every event one command caused, across services, as a table and a graph.

Each event carries `correlation_id` (the command that started the chain) and `causation_id` (the
command or event that directly caused it), so the chain can be drawn without guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True, slots=True)
class Trace:
    """The events of one correlation id, oldest first, and a mermaid graph of who caused what."""

    correlation_id: str
    table: pd.DataFrame

    def mermaid(self) -> str:
        """A mermaid flowchart: the root command, then each event under its cause."""
        lines = ["flowchart TD"]
        node_of: dict[str, str] = {}
        for row in self.table.itertuples(index=False):
            node = f"e{len(node_of)}"
            node_of[str(row.event_id)] = node
            lines.append(f'    {node}["{_safe(_label(row))}"]')
        roots = sorted({str(c) for c in self.table["causation_id"] if str(c) not in node_of})
        for index, command_id in enumerate(roots):
            lines.append(f'    c{index}(["command {command_id[:8]}"])')
            node_of[command_id] = f"c{index}"
        for row in self.table.itertuples(index=False):
            lines.append(f"    {node_of[str(row.causation_id)]} --> {node_of[str(row.event_id)]}")
        return "\n".join(lines)

    def __str__(self) -> str:
        columns = ["service", "position", "event_type", "stream_id", "version", "actor"]
        shown = self.table[columns].to_string(index=False) if len(self.table) else "(no events)"
        return f"Trace of {self.correlation_id}: {len(self.table)} events\n{shown}"

    __repr__ = __str__

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """JupyterLab draws `text/vnd.mermaid` natively; elsewhere the plain table shows."""
        return {"text/vnd.mermaid": self.mermaid(), "text/plain": str(self)}


def _label(row: Any) -> str:
    """An event's node: service and type, then its stream and version, or, for a rejection (whose
    stream is a command id), which command it refused and for what."""
    head = f"{row.service}: {row.event_type}<br/>"
    if row.event_type != "CommandRejected":
        return f"{head}{row.stream_id} v{row.version}"
    data = json.loads(row.payload)
    command = data.get("command", {})
    about = command.get("order_id") or command.get("customer_id") or ""
    return f"{head}{data.get('command_type', '')} {about}".rstrip()


def _safe(text: str) -> str:
    """Mermaid labels are quoted: keep quotes and brackets out of them."""
    return text.replace('"', "'").replace("[", "(").replace("]", ")")
