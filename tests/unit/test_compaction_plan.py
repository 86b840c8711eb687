"""Compaction's plan: which runs of small segments are merged, and into how many rows."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqrs_lab import segments as fmt
from cqrs_lab.compaction import CompactionReport, plan


def run_of(*sizes: int) -> list[fmt.Segment]:
    """Consecutive segments from position 1 holding `sizes` rows each."""
    segments, first = [], 1
    for size in sizes:
        segments.append(
            fmt.Segment(first, first + size - 1, fmt.segment_name(first, first + size - 1))
        )
        first += size
    return segments


def spans(runs: list[list[fmt.Segment]]) -> list[tuple[int, int]]:
    return [(run[0].first, run[-1].last) for run in runs]


def test_nothing_to_plan_for_an_empty_log() -> None:
    assert plan([], 10) == []


def test_small_segments_are_grouped_up_to_the_target_row_count() -> None:
    assert spans(plan(run_of(1, 1, 1, 1, 1, 1, 1), 3)) == [(1, 3), (4, 6)]


def test_a_lone_segment_is_never_rewritten() -> None:
    assert plan(run_of(1), 10) == []
    assert spans(plan(run_of(2, 2, 2), 4)) == [(1, 4)]  # the last segment would stand alone


def test_a_segment_already_at_the_target_size_is_left_as_it_is() -> None:
    assert spans(plan(run_of(5, 1, 1, 5), 5)) == [(6, 7)]


def test_a_segment_larger_than_the_target_is_left_as_it_is() -> None:
    assert spans(plan(run_of(1, 9, 1, 1), 4)) == [(11, 12)]


def test_everything_fits_in_one_run_under_a_generous_target() -> None:
    assert spans(plan(run_of(3, 1, 4, 1, 5), 1_000_000)) == [(1, 14)]


@pytest.mark.parametrize("target", [0, 1])
def test_a_target_below_two_rows_merges_nothing(target: int) -> None:
    assert plan(run_of(1, 1, 1), target) == []


@given(st.lists(st.integers(1, 20), max_size=40), st.integers(1, 50))
def test_every_run_is_consecutive_two_or_more_segments_within_the_target(
    sizes: list[int], target: int
) -> None:
    chosen = run_of(*sizes)
    runs = plan(chosen, target)
    flat = [s for run in runs for s in run]
    assert flat == sorted(flat)  # in position order, each segment at most once
    for run in runs:
        assert len(run) >= 2
        assert run[-1].last - run[0].first + 1 <= target
        start = chosen.index(run[0])
        assert chosen[start : start + len(run)] == run


def test_a_compaction_report_reads_as_before_and_after() -> None:
    report = CompactionReport(10, 3, ["a.parquet", "b.parquet"])
    assert str(report) == "10 segments -> 3 (2 written)"
