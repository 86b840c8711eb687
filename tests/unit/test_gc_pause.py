"""Bulk folds pause Python's cycle collector, and always give it back as they found it."""

import gc

import pytest

from cqrs_lab.services import cyclic_gc_paused


def test_the_cycle_collector_is_back_on_after_a_pause_even_when_the_fold_fails() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("a fold failed")
    assert gc.isenabled()


def test_a_collector_someone_else_turned_off_stays_off_after_a_pause() -> None:
    gc.disable()
    try:
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
