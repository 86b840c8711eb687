"""The checkers behind each notebook's closing exercise: they work the answer out from the lab.

A checker never holds a hard-coded answer: it asks the logs or the read models, the way the
notebook taught, and compares. `answer = None` (the notebook as shipped) gets a hint, not a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import pandas as pd

from cqrs_lab.eventlog import EventLog
from cqrs_lab.lab import Lab

OPEN_ORDERS_PER_CUSTOMER = """
SELECT customer_id, count(*) FILTER (WHERE status = 'open') AS open_orders
FROM orders
GROUP BY customer_id
ORDER BY customer_id
"""
REJECTIONS_BY_ACTOR = """
SELECT actor, count(*) AS rejected
FROM events
WHERE event_type = 'CommandRejected'
GROUP BY actor
ORDER BY rejected DESC, actor
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an exercise's answer is right, and a sentence saying why or what to try."""

    correct: bool
    message: str

    def __str__(self) -> str:
        return ("Correct! " if self.correct else "Not yet: ") + self.message

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.correct else "#9a6700"
        return f"<div style='color:{colour}'><b>{escape(str(self))}</b></div>"


def check_rename(lab: Lab, answer: object) -> Verdict:
    """Notebook 01: register c-42 (Barbara Liskov, 4 Queue Ln), rename her to Barbara; her stream's
    version after the rename is the answer."""
    if answer is None:
        return Verdict(False, "send the two commands, then set `answer` to the stream's version.")
    events = lab.events(stream_id="customer-c-42")
    kinds = list(events["event_type"])
    if kinds[:2] != ["CustomerRegistered", "CustomerRenamed"]:
        return Verdict(False, f"customer-c-42 holds {kinds or 'no events'}; register, then rename.")
    if events["payload"].iloc[1] != '{"customer_id":"c-42","name":"Barbara"}':
        return Verdict(False, "the rename should give her the name 'Barbara'.")
    version = int(events["version"].iloc[-1])
    if answer != version:
        return Verdict(False, f"{answer!r} is not the stream's version; look at the events' `v`.")
    return Verdict(True, f"every event moves its stream on by one: v{version}.")


def check_open_orders(lab: Lab, answer: object) -> Verdict:
    """Notebook 02: a DataFrame of customer_id and open_orders per customer, from lab.sql."""
    if answer is None:
        return Verdict(False, "set `answer = lab.sql(...)`: customer_id, open_orders per customer.")
    if not isinstance(answer, pd.DataFrame):
        return Verdict(False, f"expected a DataFrame from lab.sql, got {type(answer).__name__}.")
    if list(answer.columns) != ["customer_id", "open_orders"]:
        return Verdict(
            False, f"columns should be customer_id, open_orders; got {list(answer.columns)}."
        )
    expected = lab.sql(OPEN_ORDERS_PER_CUSTOMER)
    got = answer.sort_values("customer_id").reset_index(drop=True)
    if not got.astype(str).equals(expected.astype(str)):
        return Verdict(False, "the counts differ from the orders read model; GROUP BY customer_id?")
    return Verdict(
        True, f"{int(expected['open_orders'].sum())} open orders over {len(got)} customers."
    )


def check_cascade_size(lab: Lab, answer: object) -> Verdict:
    """Notebook 03: delete customer c-2, sync, and count the orders the cascade cancelled."""
    if answer is None:
        return Verdict(False, "delete c-2, sync, then count its cancelled orders into `answer`.")
    deleted = lab.events(stream_id="customer-c-2", event_type="CustomerDeleted")
    if deleted.empty:
        return Verdict(
            False, "customer c-2 is not deleted yet: send DeleteCustomer(customer_id='c-2')."
        )
    if lab.subscription.checkpoint < int(deleted["position"].iloc[0]):
        return Verdict(False, "the Order service has not received the deletion yet: lab.sync().")
    cascade = lab.events(correlation_id=str(deleted["correlation_id"].iloc[0]))
    cancelled = int((cascade["event_type"] == "OrderCancelled").sum())
    if answer != cancelled:
        return Verdict(
            False, f"{answer!r} is not it; try lab.trace(...) on the deletion's command."
        )
    return Verdict(
        True, f"the deletion's correlation id reaches {cancelled} OrderCancelled events."
    )


def check_status_before_deletion(lab: Lab, answer: object) -> Verdict:
    """Notebook 04: order o-3's status just before customer c-2 was deleted, by time travel."""
    if answer is None:
        return Verdict(
            False, "use lab.as_of(position=...) just before the deletion; read o-3's status."
        )
    events = lab.events()
    deleted = events.index[
        (events["stream_id"] == "customer-c-2") & (events["event_type"] == "CustomerDeleted")
    ]
    if deleted.empty:
        return Verdict(False, "customer c-2 has not been deleted in this lab.")
    before = lab.as_of(position=int(deleted[0]))
    try:
        status = before.sql("SELECT status FROM orders WHERE order_id = 'o-3'")["status"]
    finally:
        before.close()
    expected = str(status.iloc[0]) if len(status) else "(no such order yet)"
    if answer != expected:
        return Verdict(False, f"{answer!r} is not what the read model said then.")
    return Verdict(True, f"just before the deletion, o-3 was {expected}.")


def check_top_rejected_actor(lab: Lab, answer: object) -> Verdict:
    """Notebook 05: the actor with the most rejected commands (ties: the first by name)."""
    if answer is None:
        return Verdict(
            False, "group the CommandRejected events by actor; put the top one in `answer`."
        )
    if not isinstance(answer, str):
        return Verdict(
            False, f"answer should be the actor's name as a string, got {type(answer).__name__}."
        )
    ranking = lab.sql(REJECTIONS_BY_ACTOR)
    if ranking.empty:
        return Verdict(False, "this lab has no rejected commands.")
    top = str(ranking["actor"].iloc[0])
    if answer != top:
        return Verdict(False, f"{answer!r} is not the actor with the most rejections.")
    return Verdict(True, f"{top} had {int(ranking['rejected'].iloc[0])} commands rejected.")


def check_damaged_file(log: EventLog, answer: object) -> Verdict:
    """Notebook 06: after tampering, the name of the file `verify()` reports as damaged."""
    if answer is None:
        return Verdict(False, "run log.verify() and put the damaged file's name in `answer`.")
    named = sorted({Path(finding.file).name for finding in log.verify().findings if finding.file})
    if not named:
        return Verdict(False, "verify() finds nothing wrong: tamper with a file first.")
    if Path(str(answer)).name not in named:
        return Verdict(False, f"{answer!r} is not among the files verify() names: look again.")
    return Verdict(True, f"verify() caught the change in {Path(str(answer)).name}.")
