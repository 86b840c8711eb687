"""Audit analytics on a long history: the questions an analyst asks of the event log.

    >>> lab = shop_history("05")            # the demo shop, about 10^5 events, in a temp folder
    >>> actor_activity(lab)                 # who did what, and when
    >>> activity_figure(activity_over_time(lab, unit="week"))

Each question is one query function (SQL over the `events` view and the read models, run through
`lab.sql`, so it reads and never writes) and one figure function that draws the query's result as
a `matplotlib.figure.Figure` (no pyplot state: safe to call anywhere, shown once in a notebook).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cqrs_lab.demo import generate
from cqrs_lab.determinism import fixed_clock, seeded_ids
from cqrs_lab.lab import Lab
from cqrs_lab.scratch import scratch_folder

ACTOR_ACTIVITY = """
SELECT
    actor,
    event_type,
    count(*) AS events,
    min(recorded_at) AS first_at,
    max(recorded_at) AS last_at
FROM events
GROUP BY actor, event_type
ORDER BY actor, events DESC, event_type
"""
ACTIVITY_OVER_TIME = """
SELECT
    date_trunc($unit, recorded_at) AS period,
    actor,
    count(*) AS events
FROM events
GROUP BY period, actor
ORDER BY period, actor
"""
ORDER_FUNNEL = """
SELECT
    stage,
    orders,
    round(100 * orders / sum(orders) FILTER (WHERE step = 1) OVER (), 1) AS percent_of_placed
FROM (
    SELECT 1 AS step, 'placed' AS stage, count(*) AS orders
    FROM orders
    UNION ALL
    SELECT
        CASE status WHEN 'shipped' THEN 2 WHEN 'cancelled' THEN 3 ELSE 4 END AS step,
        CASE status WHEN 'open' THEN 'still open' ELSE status END AS stage,
        count(*) AS orders
    FROM orders
    GROUP BY status
)
ORDER BY step
"""
TIME_TO_SHIP = """
SELECT
    order_id,
    placed_at,
    shipped_at,
    epoch(shipped_at - placed_at) / 3600 AS hours
FROM orders
WHERE status = 'shipped'
ORDER BY placed_at, order_id
"""
REJECTIONS_BY_RULE = """
SELECT
    payload ->> '$.command_type' AS command_type,
    regexp_replace(payload ->> '$.reason', $quoted, $placeholder, 'g') AS rule,
    count(*) AS rejected,
    string_agg(DISTINCT actor, ', ' ORDER BY actor) AS actors
FROM events
WHERE event_type = 'CommandRejected'
GROUP BY command_type, rule
ORDER BY rejected DESC, command_type, rule
"""
CASCADE_SIZES = """
SELECT
    deletion.payload ->> '$.customer_id' AS customer_id,
    deletion.recorded_at AS deleted_at,
    deletion.correlation_id,
    count(effect.event_id) FILTER (WHERE effect.event_type = 'OrderCancelled') AS orders_cancelled,
    count(effect.event_id) FILTER (WHERE effect.event_type = 'CommandRejected') AS cancels_rejected
FROM events AS deletion
LEFT JOIN events AS effect
    ON effect.correlation_id = deletion.correlation_id
    AND effect.service = 'order'
WHERE deletion.event_type = 'CustomerDeleted'
GROUP BY customer_id, deleted_at, deletion.correlation_id
ORDER BY orders_cancelled DESC, deleted_at, customer_id
"""
QUOTED = "'[^']*'"  # every quoted value in a reason is an id or a name: the rule is the rest
PLACEHOLDER = "…"
HISTORY_CLOCK = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)  # after the demo's last event


# --- a history to analyse -------------------------------------------------------------------------


def shop_history(name: str, *, events: int = 100_000, seed: int = 1) -> Lab:
    """A lab in a temp folder (removed at exit) with the demo shop's seeded history of ~`events`."""
    folder = scratch_folder(name, in_memory=True)
    generate(folder, events=events, seed=seed)
    # Later sends need ids the generator never used (the same seed would repeat them).
    ids = seeded_ids(seed + 1_000_003)
    return Lab.open(folder, clock=fixed_clock(HISTORY_CLOCK, timedelta(minutes=1)), ids=ids)


# --- the questions ----------------------------------------------------------------------------


def actor_activity(lab: Lab) -> pd.DataFrame:
    """Who did what and when: events per actor and event type, with the first and last time."""
    return lab.sql(ACTOR_ACTIVITY)


def activity_over_time(lab: Lab, *, unit: str = "week") -> pd.DataFrame:
    """Events per actor per period (`unit`: a DuckDB date part such as 'day', 'week', 'month')."""
    return lab.sql(ACTIVITY_OVER_TIME, {"unit": unit})


def order_funnel(lab: Lab) -> pd.DataFrame:
    """The order lifecycle: placed, then shipped, cancelled or still open (orders read model)."""
    return lab.sql(ORDER_FUNNEL)


def time_to_ship(lab: Lab) -> pd.DataFrame:
    """Each shipped order with the hours from its placing to its shipping."""
    return lab.sql(TIME_TO_SHIP)


def rejections_by_rule(lab: Lab) -> pd.DataFrame:
    """Rejected commands per broken rule: the reason with its ids and names replaced by '…'."""
    return lab.sql(REJECTIONS_BY_RULE, {"quoted": QUOTED, "placeholder": PLACEHOLDER})


def cascade_sizes(lab: Lab) -> pd.DataFrame:
    """Per deleted customer, the orders its deletion's cascade cancelled (and failed to cancel)."""
    return lab.sql(CASCADE_SIZES)


# --- the pictures -------------------------------------------------------------------------------


def actor_activity_figure(activity: pd.DataFrame) -> Figure:
    """Events per actor as horizontal bars, one colour per event type (from `actor_activity`)."""
    table = activity.pivot_table(
        index="actor", columns="event_type", values="events", aggfunc="sum", fill_value=0
    ).sort_index(ascending=False)
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    left = pd.Series(0, index=table.index)
    for event_type in table.columns:
        ax.barh(table.index, table[event_type], left=left, label=event_type)
        left = left + table[event_type]
    ax.set(title="Who did what", xlabel="events (count)", ylabel="actor")
    ax.legend(title="event type", fontsize="small", loc="center left", bbox_to_anchor=(1, 0.5))
    return fig


def activity_figure(activity: pd.DataFrame, *, unit: str = "week") -> Figure:
    """One line per actor: events per period over time (from `activity_over_time`)."""
    table = activity.pivot_table(
        index="period", columns="actor", values="events", aggfunc="sum", fill_value=0
    )
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    for actor in table.columns:
        ax.plot(table.index, table[actor], marker=".", label=actor)
    ax.set(
        title=f"Activity per actor over time (events per {unit})",
        xlabel=f"{unit} starting (UTC date)",
        ylabel=f"events per {unit} (count)",
    )
    ax.legend(title="actor", fontsize="small", loc="center left", bbox_to_anchor=(1, 0.5))
    fig.autofmt_xdate()
    return fig


def funnel_figure(funnel: pd.DataFrame) -> Figure:
    """The order funnel as horizontal bars, placed on top (from `order_funnel`)."""
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.barh(
        funnel["stage"],
        funnel["orders"],
        color=["grey", "tab:green", "tab:red", "tab:blue"][: len(funnel)],
    )
    ax.bar_label(bars, labels=[f"{p}%" for p in funnel["percent_of_placed"]], padding=3)
    ax.invert_yaxis()
    ax.set(title="Order lifecycle funnel", xlabel="orders (count)", ylabel="stage")
    ax.margins(x=0.12)
    return fig


def time_to_ship_figure(shipped: pd.DataFrame, *, bins: int = 40) -> Figure:
    """A histogram of the days from placed to shipped, median marked (from `time_to_ship`)."""
    days = shipped["hours"].astype(float) / 24
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(days, bins=bins, color="tab:green")
    if len(days):
        ax.axvline(
            days.median(), color="black", linestyle="--", label=f"median {days.median():.1f} days"
        )
        ax.legend()
    ax.set(
        title="Time from placed to shipped", xlabel="time to ship (days)", ylabel="orders (count)"
    )
    return fig


def rejections_figure(rejections: pd.DataFrame) -> Figure:
    """Rejected commands per rule as bars, the most frequent on top (from `rejections_by_rule`)."""
    labels = rejections["command_type"] + ": " + rejections["rule"]
    fig = Figure(figsize=(9, 0.5 * len(rejections) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(labels, rejections["rejected"], color="tab:red")
    ax.invert_yaxis()
    ax.set(
        title="Rejected commands by rule",
        xlabel="rejected commands (count)",
        ylabel="command: rule",
    )
    return fig


def cascade_figure(cascades: pd.DataFrame) -> Figure:
    """How many deletions cancelled 0, 1, 2, … orders (from `cascade_sizes`)."""
    sizes = cascades["orders_cancelled"].value_counts().sort_index()
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(sizes.index, sizes.to_numpy(), color="tab:purple")
    ax.set(
        title="Cascade sizes: orders cancelled per customer deletion",
        xlabel="orders cancelled by one deletion (count)",
        ylabel="customer deletions (count)",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
