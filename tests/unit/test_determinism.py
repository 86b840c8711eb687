"""Injected clocks and ids: fixed ones repeat exactly, real ones do not."""

import os
import re
from datetime import UTC, datetime, timedelta

import pytest

from cqrs_lab.determinism import fixed_clock, random_ids, seeded_ids, system_clock

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_fixed_clock_starts_at_its_start_and_moves_on_by_its_step() -> None:
    clock = fixed_clock(START, timedelta(minutes=5))
    assert [clock() for _ in range(3)] == [
        START,
        START + timedelta(minutes=5),
        START + timedelta(minutes=10),
    ]


def test_a_fixed_clock_steps_one_second_by_default() -> None:
    clock = fixed_clock(START)
    clock()
    assert clock() == START + timedelta(seconds=1)


def test_two_fixed_clocks_with_the_same_start_tell_the_same_times() -> None:
    one, two = fixed_clock(START), fixed_clock(START)
    assert [one() for _ in range(5)] == [two() for _ in range(5)]


def test_a_fixed_clock_refuses_a_naive_start_and_says_how_to_fix_it() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        fixed_clock(datetime(2026, 1, 1))


def test_seeded_ids_repeat_exactly_for_the_same_seed() -> None:
    one, two = seeded_ids(7), seeded_ids(7)
    assert [one() for _ in range(100)] == [two() for _ in range(100)]


def test_seeded_ids_differ_between_seeds_and_never_repeat_within_one() -> None:
    assert seeded_ids(7)() != seeded_ids(8)()
    ids = seeded_ids(7)
    many = [ids() for _ in range(10_000)]
    assert len(set(many)) == len(many)


def test_seeded_ids_look_like_uuid4_hex() -> None:
    ids = seeded_ids(1)
    for _ in range(50):
        assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", ids())


def test_random_ids_are_32_hex_digits_and_unique() -> None:
    many = [random_ids() for _ in range(5000)]  # crosses a refill of the random pool
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in many)
    assert len(set(many)) == len(many)


def test_the_system_clock_is_aware_utc_and_current() -> None:
    before = datetime.now(UTC)
    now = system_clock()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert before <= now <= datetime.now(UTC)


def test_a_forked_child_never_hands_out_its_parents_random_ids() -> None:
    random_ids()  # the pool is full now, and a forked child gets a copy of it
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: send its next ids, then leave without cleanup
        os.write(write, " ".join(random_ids() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    childs = set(os.read(read, 4096).decode().split())
    os.close(read)
    assert status == 0 and len(childs) == 3
    assert childs.isdisjoint(random_ids() for _ in range(3))
