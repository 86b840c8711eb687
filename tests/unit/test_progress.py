"""Progress bars show to a person waiting on a big job; logs, tests and notebooks stay quiet."""

from __future__ import annotations

import pytest

from cqrs_lab import progress


def test_nobody_watches_a_test_run() -> None:
    assert not progress.watched()  # pytest captures stderr: not a terminal, not a kernel


def test_a_big_job_nobody_watches_is_silent() -> None:
    with progress.bar(progress.BIG * 2, desc="rebuild") as shown:
        assert shown.disable


def test_a_big_job_someone_watches_shows_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "watched", lambda: True)
    with progress.bar(progress.BIG, desc="rebuild") as shown:
        assert not shown.disable
        assert shown.total == progress.BIG


def test_a_small_job_is_silent_even_when_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "watched", lambda: True)
    with progress.bar(progress.BIG - 1, desc="rebuild") as shown:
        assert shown.disable


def test_asking_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "watched", lambda: False)
    with progress.bar(10, desc="demo", show=True) as shown:
        assert not shown.disable
    with progress.bar(progress.BIG, desc="demo", show=False) as shown:
        assert shown.disable
