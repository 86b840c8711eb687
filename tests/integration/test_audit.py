"""Audit analytics on a small generated shop: each query against a count made independently in
pandas from `lab.events()`, the figures' labels, and the notebook 05 exercise checker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pandas as pd
import pytest
from matplotlib.figure import Figure

from cqrs_lab import audit
from cqrs_lab import domain as d
from cqrs_lab.demo import generate
from cqrs_lab.exercises import check_top_rejected_actor
from cqrs_lab.lab import Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A demo shop of about 3000 events (some deletions, cascades and rejections), opened."""
    path = tmp_path_factory.mktemp("audit") / "shop"
    generate(path, events=3000, seed=7)
    with Lab.open(path) as opened:
        yield opened


@pytest.fixture(scope="module")
def events(lab: Lab) -> pd.DataFrame:
    return lab.events()


def _rows(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    return [tuple(row) for row in frame.astype(object).itertuples(index=False)]


def test_the_small_shop_has_something_to_audit(events: pd.DataFrame):
    kinds = set(events["event_type"])
    assert {"CustomerDeleted", "CommandRejected", "OrderShipped", "OrderCancelled"} <= kinds


def test_actor_activity_counts_each_actors_events_per_type_with_first_and_last_time(
    lab: Lab, events: pd.DataFrame
):
    expected = (
        events.groupby(["actor", "event_type"])["recorded_at"]
        .agg(["size", "min", "max"])
        .reset_index()
        .sort_values(["actor", "size", "event_type"], ascending=[True, False, True])
    )
    got = audit.actor_activity(lab)
    assert list(got.columns) == ["actor", "event_type", "events", "first_at", "last_at"]
    assert _rows(got) == _rows(expected)
    assert got["events"].sum() == len(events)


def test_activity_over_time_counts_events_per_actor_per_monday_week(lab: Lab, events: pd.DataFrame):
    at = events["recorded_at"]
    monday = (at - pd.to_timedelta(at.dt.day_of_week, unit="D")).dt.normalize()
    expected = (
        events.assign(period=monday)
        .groupby(["period", "actor"])
        .size()
        .reset_index()
        .sort_values(["period", "actor"])
    )
    got = audit.activity_over_time(lab)
    assert _rows(got) == _rows(expected)


def test_activity_over_time_takes_the_period_as_a_parameter(lab: Lab, events: pd.DataFrame):
    months = audit.activity_over_time(lab, unit="month")
    assert set(months["period"].dt.day) == {1}
    assert months["events"].sum() == len(events)


def test_order_funnel_matches_each_order_streams_last_event(lab: Lab, events: pd.DataFrame):
    orders = events[events["stream_type"] == "Order"]
    last = orders.groupby("stream_id")["event_type"].last().value_counts()
    placed = int((orders["event_type"] == "OrderPlaced").sum())
    got = audit.order_funnel(lab)
    assert list(got["stage"]) == ["placed", "shipped", "cancelled", "still open"]
    assert list(got["orders"]) == [
        placed,
        last.get("OrderShipped", 0),
        last.get("OrderCancelled", 0),
        last.get("OrderPlaced", 0),
    ]
    assert got["percent_of_placed"].iloc[0] == 100.0
    assert got["percent_of_placed"].iloc[1] == round(100 * last["OrderShipped"] / placed, 1)


def test_time_to_ship_is_the_hours_between_an_orders_placed_and_shipped_events(
    lab: Lab, events: pd.DataFrame
):
    def time_of(event_type: str) -> pd.Series:
        rows = events[events["event_type"] == event_type]
        return rows.set_index(rows["stream_id"].str.removeprefix("order-"))["recorded_at"]

    placed, shipped = time_of("OrderPlaced"), time_of("OrderShipped")
    expected = ((shipped - placed[shipped.index]).dt.total_seconds() / 3600).sort_index()
    got = audit.time_to_ship(lab).set_index("order_id")["hours"].sort_index()
    assert list(got.index) == list(expected.index)
    assert got.to_numpy() == pytest.approx(expected.to_numpy())
    assert (got >= 0).all() and got.max() > 24  # some orders wait days


def test_rejections_are_grouped_by_rule_with_ids_and_names_taken_out(
    lab: Lab, events: pd.DataFrame
):
    rejected = events[events["event_type"] == "CommandRejected"]["payload"].map(json.loads)
    rules = pd.DataFrame(
        {
            "command_type": rejected.map(lambda p: p["command_type"]),
            "rule": rejected.map(lambda p: re.sub(r"'[^']*'", "…", p["reason"])),
        }
    )
    expected = rules.value_counts().to_dict()
    got = audit.rejections_by_rule(lab)
    assert {
        (c, r): n for c, r, n in zip(got["command_type"], got["rule"], got["rejected"], strict=True)
    } == (expected)
    assert list(got["rejected"]) == sorted(got["rejected"], reverse=True)
    assert not got["rule"].str.contains(r"c-\d|o-\d").any()  # a rule, not one case of it
    assert len(got) < len(rejected) / 5
    actors = events[events["event_type"] == "CommandRejected"]["actor"]
    assert set(", ".join(got["actors"]).split(", ")) == set(actors)


def test_cascade_sizes_count_the_orders_each_deletion_cancelled_through_its_correlation_id(
    lab: Lab, events: pd.DataFrame
):
    deletions = events[events["event_type"] == "CustomerDeleted"]
    in_order_log = events[events["service"] == d.ORDER_SERVICE]
    cancelled = in_order_log[in_order_log["event_type"] == "OrderCancelled"]
    expected = {
        json.loads(payload)["customer_id"]: int((cancelled["correlation_id"] == cid).sum())
        for payload, cid in zip(deletions["payload"], deletions["correlation_id"], strict=True)
    }
    got = audit.cascade_sizes(lab)
    assert dict(zip(got["customer_id"], got["orders_cancelled"], strict=True)) == expected
    assert list(got["correlation_id"].sort_values()) == sorted(deletions["correlation_id"])
    by_policy = cancelled[cancelled["actor"] != "carol@support"]
    assert got["orders_cancelled"].sum() == len(by_policy)
    assert list(got["orders_cancelled"]) == sorted(got["orders_cancelled"], reverse=True)


def test_cascade_sizes_count_the_cancels_the_order_service_refused(lab: Lab, events: pd.DataFrame):
    refused = events[
        (events["event_type"] == "CommandRejected")
        & (
            events["correlation_id"].isin(
                events[events["event_type"] == "CustomerDeleted"]["correlation_id"]
            )
        )
    ]
    assert audit.cascade_sizes(lab)["cancels_rejected"].sum() == len(refused)


def test_the_queries_change_nothing(lab: Lab):
    before = (lab.lag(), lab.sql("SELECT * FROM orders ORDER BY order_id"), len(lab.events()))
    for query in QUERIES:
        query(lab)
    after = (lab.lag(), lab.sql("SELECT * FROM orders ORDER BY order_id"), len(lab.events()))
    assert before[0] == after[0] and before[2] == after[2]
    pd.testing.assert_frame_equal(before[1], after[1])


QUERIES = [
    audit.actor_activity,
    audit.activity_over_time,
    audit.order_funnel,
    audit.time_to_ship,
    audit.rejections_by_rule,
    audit.cascade_sizes,
]
FIGURES = [
    audit.actor_activity_figure,
    audit.activity_figure,
    audit.funnel_figure,
    audit.time_to_ship_figure,
    audit.rejections_figure,
    audit.cascade_figure,
]


@pytest.mark.parametrize(
    ("query", "figure"), list(zip(QUERIES, FIGURES, strict=True)), ids=lambda f: f.__name__
)
def test_every_figure_has_a_title_and_axis_labels_with_units(lab: Lab, query, figure):
    fig = figure(query(lab))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title()
    assert re.search(r"\(.+\)", ax.get_xlabel()) or re.search(r"\(.+\)", ax.get_ylabel())
    assert ax.get_xlabel() and ax.get_ylabel()
    assert ax.patches or ax.lines  # something was drawn


def test_a_history_for_the_notebook_lives_in_a_temp_folder_and_can_take_new_commands():
    lab = audit.shop_history("05-test", events=300, seed=2)
    try:
        assert "cqrs-lab-05-test-" in str(lab.path)
        assert len(lab.events()) >= 300
        assert lab.lag()["orders <- order log"] == 0  # the read models caught up on open
        result = lab.send(d.RegisterCustomer(customer_id="c-new", name="Ada", address="1 Loop Rd"))
        assert result.accepted
    finally:
        lab.close()


def test_the_exercise_accepts_the_actor_with_most_rejections_and_nothing_else(
    lab: Lab, events: pd.DataFrame
):
    counts = events[events["event_type"] == "CommandRejected"]["actor"].value_counts()
    top = sorted(counts.index, key=lambda actor: (-counts[actor], actor))[0]
    assert not check_top_rejected_actor(lab, None).correct
    assert check_top_rejected_actor(lab, top).correct
    assert not check_top_rejected_actor(lab, "nobody@shop").correct
    wrong_type = check_top_rejected_actor(lab, counts)
    assert not wrong_type.correct and "string" in wrong_type.message
