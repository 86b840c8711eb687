"""Injected clocks and id generators: real ones by default, fixed ones for byte-stable notebooks.

A `Clock` returns an aware UTC datetime; an `IdGenerator` returns a fresh string id. The log asks
the clock once per commit and the id generator once per event that has no id yet.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
IdGenerator = Callable[[], str]


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def random_ids() -> str:
    """128 random bits as 32 hex digits: as unique as a uuid4, and cheaper to make in bulk."""
    if not _RANDOM_POOL:
        pool = os.urandom(16 * 1024).hex()
        _RANDOM_POOL.extend(pool[i : i + 32] for i in range(0, len(pool), 32))
    return _RANDOM_POOL.pop()


_RANDOM_POOL: list[str] = []
# A forked child must not hand out the ids left in its parent's pool: both would use them.
os.register_at_fork(after_in_child=_RANDOM_POOL.clear)


def fixed_clock(start: datetime, step: timedelta = timedelta(seconds=1)) -> Clock:
    """A clock that starts at `start` and moves on by `step` each time it is read."""
    if start.tzinfo is None:
        raise ValueError(
            "fixed_clock needs an aware datetime, e.g. datetime(2026, 1, 1, tzinfo=UTC)"
        )
    state = {"now": start - step}

    def clock() -> datetime:
        state["now"] += step
        return state["now"]

    return clock


def seeded_ids(seed: int) -> IdGenerator:
    """Ids that look like uuid4s but repeat exactly for the same seed."""
    rng = random.Random(seed)
    keep = ~((0xF000 << 64) | (0xC000 << 48))  # clear the version and variant bits ...
    mark = (0x4000 << 64) | (0x8000 << 48)  # ... and set them as a uuid4's (what uuid.UUID does)

    def ids() -> str:
        return f"{(rng.getrandbits(128) & keep) | mark:032x}"

    return ids
