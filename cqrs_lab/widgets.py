"""Forms and browsers for notebooks, generated from the command dataclasses: no per-command UI code.

    >>> CommandForm(lab, PlaceOrder)      # one text box per field, a Send button, the result below
    >>> CommandConsole(lab)               # pick any command from a dropdown, then its form
    >>> EventBrowser(lab)                 # the events of both services, filtered
    >>> HistoryScrubber(lab)              # a slider through history with a plot that follows

A form is thin: it turns the text in its boxes into a command (`values_to_command`, which names
each field it cannot read), calls `lab.send`, and shows what came back. Business rules stay in
`domain.decide_*`: a negative quantity is sent, rejected and recorded, like any other command.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from html import escape
from typing import Any

import ipywidgets as w
import pandas as pd
from matplotlib.figure import Figure

from cqrs_lab import domain as d
from cqrs_lab.lab import Lab
from cqrs_lab.services import SendResult

ALL = "(all)"
BROWSER_COLUMNS = ["service", "position", "stream_id", "version", "event_type", "actor", "payload"]
HINTS: dict[object, str] = {str: "text", int: "whole number, e.g. 2", Decimal: "amount, e.g. 19.99"}
STATUSES = (d.OPEN, d.SHIPPED, d.CANCELLED)
STATUS_COLOURS = {d.OPEN: "#0969da", d.SHIPPED: "#1a7f37", d.CANCELLED: "#cf222e"}


# --- turning form values into a command (no widgets involved: unit-tested on its own) ------------


@dataclass(frozen=True, slots=True)
class Conversion:
    """A form's values read as a command, or, per field, why they could not be."""

    command: d.Command | None
    problems: Mapping[str, str]


def values_to_command(command_type: type[d.Command], values: Mapping[str, object]) -> Conversion:
    """Read raw form values (usually text) as a `command_type`; every unreadable field is named."""
    parsed: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for f in fields(command_type):
        raw = values.get(f.name, "")
        raw = raw.strip() if isinstance(raw, str) else raw
        try:
            parsed[f.name] = d.parse_field(f.type, raw)
        except ValueError as problem:
            problems[f.name] = f"{f.name} {problem}, got {raw!r}"
    if problems:
        return Conversion(None, problems)
    return Conversion(command_type(**parsed), {})


# --- the widgets ---------------------------------------------------------------------------------


class CommandForm(w.VBox):
    """A form for one command type: a text box per field, Send, then the result of `lab.send`.

    >>> form = CommandForm(lab, RegisterCustomer)
    >>> form.fill(customer_id="c-9", name="Grace", address="9 Heap Ave").submit.click()
    >>> form.last_result    # the SendResult, also shown under the button
    """

    def __init__(
        self,
        lab: Lab,
        command_type: type[d.Command],
        *,
        actor: str = "learner",
        on_sent: Callable[[SendResult], None] | None = None,
    ) -> None:
        self.lab, self.command_type, self.on_sent = lab, command_type, on_sent
        self.inputs = {f.name: _text_box(f.name, f.type) for f in fields(command_type)}
        self.problems = {name: w.HTML() for name in self.inputs}
        self.actor = w.Text(value=actor, description="actor")
        self.submit = w.Button(
            description=f"Send {command_type.__name__}",
            button_style="primary",
            layout=w.Layout(width="auto"),  # the whole command name, not "Send RegisterCus..."
        )
        self.result = w.HTML()
        self.last_result: SendResult | None = None
        self.last_problems: Mapping[str, str] = {}
        self.submit.on_click(self._send)
        rows = [w.VBox([self.inputs[name], self.problems[name]]) for name in self.inputs]
        title = w.HTML(f"<b>{command_type.__name__}</b>: {escape(command_type.__doc__ or '')}")
        super().__init__([title, *rows, self.actor, self.submit, self.result])

    def fill(self, **values: str) -> CommandForm:
        """Type values into the boxes (what a person does before clicking Send)."""
        for name, value in values.items():
            self.inputs[name].value = value
        return self

    def _send(self, _button: w.Button) -> None:
        conversion = values_to_command(self.command_type, self.values())
        self.last_problems = conversion.problems
        for name, label in self.problems.items():
            problem = conversion.problems.get(name, "")
            label.value = f"<span style='color:#cf222e'>{escape(problem)}</span>" if problem else ""
        if conversion.command is None:
            self.result.value = "<i>Nothing sent: fix the fields marked in red.</i>"
            return
        self.last_result = self.lab.send(conversion.command, actor=self.actor.value.strip())
        self.result.value = self.last_result._repr_html_()
        if self.on_sent is not None:
            self.on_sent(self.last_result)

    def values(self) -> dict[str, str]:
        """What is in the boxes now, by field name."""
        return {name: box.value for name, box in self.inputs.items()}

    def __repr__(self) -> str:
        return f"CommandForm({self.command_type.__name__}: {', '.join(self.inputs)})"


class CommandConsole(w.VBox):
    """Every command the lab knows in one dropdown; choosing one shows its form."""

    def __init__(
        self,
        lab: Lab,
        *,
        actor: str = "learner",
        on_sent: Callable[[SendResult], None] | None = None,
    ) -> None:
        self.lab, self.actor, self.on_sent = lab, actor, on_sent
        self.choice = w.Dropdown(options=list(d.COMMANDS), description="command")
        self.form = self._form_for(self.choice.value)
        self.choice.observe(self._switch, names="value")
        super().__init__([self.choice, self.form])

    def _form_for(self, name: str) -> CommandForm:
        return CommandForm(self.lab, d.COMMANDS[name], actor=self.actor, on_sent=self.on_sent)

    def _switch(self, change: Mapping[str, Any]) -> None:
        self.form = self._form_for(change["new"])
        self.children = (self.choice, self.form)

    def __repr__(self) -> str:
        return f"CommandConsole({len(d.COMMANDS)} commands, showing {self.choice.value})"


class EventBrowser(w.VBox):
    """Both services' events as a table, filtered by service, stream and type, newest last."""

    def __init__(self, lab: Lab, *, limit: int = 50) -> None:
        self.lab, self.limit = lab, limit
        self.service = w.Dropdown(options=[ALL, d.CUSTOMER_SERVICE, d.ORDER_SERVICE])
        self.event_type = w.Dropdown(options=[ALL, *d.EVENTS])
        self.stream_id = w.Text(placeholder="stream id, e.g. customer-c-1", continuous_update=False)
        self.refresh_button = w.Button(description="Refresh")
        self.table = w.HTML()
        for control in (self.service, self.event_type, self.stream_id):
            control.observe(lambda _change: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _button: self.refresh())
        filters = w.HBox([self.service, self.event_type, self.stream_id, self.refresh_button])
        super().__init__([filters, self.table])
        self.refresh()

    def frame(self) -> pd.DataFrame:
        """The events the filters select (the last `limit` of them)."""
        events = self.lab.events(
            service=_chosen(self.service.value),
            event_type=_chosen(self.event_type.value),
            stream_id=self.stream_id.value.strip() or None,
        )
        return events[BROWSER_COLUMNS].tail(self.limit).reset_index(drop=True)

    def refresh(self) -> None:
        """Read the logs again and redraw the table."""
        frame = self.frame()
        self.table.value = frame.to_html(index=False) if len(frame) else "<i>no events</i>"

    def __repr__(self) -> str:
        return f"EventBrowser({len(self.frame())} events shown)"


class HistoryScrubber(w.VBox):
    """A slider over the history: drag it and the plot shows the orders as of that event."""

    def __init__(self, lab: Lab) -> None:
        self.timeline = status_timeline(lab.events())
        last = len(self.timeline) - 1
        self.slider = w.IntSlider(value=last, min=0, max=last, description="after event")
        self.caption = w.HTML()
        self.image = w.Image(format="png")
        self.slider.observe(lambda _change: self.draw(), names="value")
        super().__init__([self.slider, self.caption, self.image])
        self.draw()

    def counts(self) -> dict[str, int]:
        """Orders by status after the slider's event."""
        row = self.timeline.iloc[self.slider.value]
        return {status: int(row[status]) for status in STATUSES}

    def draw(self) -> None:
        """Redraw the caption and the plot for the slider's position."""
        at = self.slider.value
        shown = ", ".join(f"{count} {status}" for status, count in self.counts().items())
        self.caption.value = f"After event {at} of {len(self.timeline) - 1}: orders {shown}"
        self.image.value = _png(timeline_figure(self.timeline, at))

    def __repr__(self) -> str:
        return f"HistoryScrubber(after event {self.slider.value}: {self.counts()})"


# --- the history plot ----------------------------------------------------------------------------


def status_timeline(events: pd.DataFrame) -> pd.DataFrame:
    """Orders by status after each event of `lab.events()` (row 0: before any event)."""
    status_of: dict[str, str] = {}
    rows = [{"event": 0, **dict.fromkeys(STATUSES, 0)}]
    counts = dict.fromkeys(STATUSES, 0)
    new_status = {"OrderPlaced": d.OPEN, "OrderShipped": d.SHIPPED, "OrderCancelled": d.CANCELLED}
    pairs = zip(events["stream_id"], events["event_type"], strict=True)
    for number, (stream, kind) in enumerate(pairs, 1):
        if kind in new_status:
            if stream in status_of:
                counts[status_of[stream]] -= 1
            status_of[stream] = new_status[kind]
            counts[new_status[kind]] += 1
        rows.append({"event": number, **counts})
    return pd.DataFrame(rows)


def timeline_figure(timeline: pd.DataFrame, at: int) -> Figure:
    """Orders by status over the history, with a line at event `at`."""
    figure = Figure(figsize=(7, 3), dpi=80)
    axes = figure.add_subplot()
    for status in STATUSES:
        axes.step(
            timeline["event"],
            timeline[status],
            where="post",
            label=status,
            color=STATUS_COLOURS[status],
        )
    axes.axvline(at, color="black", linestyle="--", linewidth=1)
    axes.set(
        title=f"Orders by status after event {at}",
        xlabel="events (both services, in order)",
        ylabel="orders",
    )
    axes.legend(loc="upper left")
    figure.tight_layout()
    return figure


# --- small helpers -------------------------------------------------------------------------------


def _text_box(name: str, kind: object) -> w.Text:
    return w.Text(description=name, placeholder=HINTS.get(kind, ""))


def _chosen(value: str) -> str | None:
    return None if value == ALL else value


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
