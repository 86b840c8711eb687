"""The stream index: `lab.history` read through files sorted by stream shows exactly what a scan
of the whole log shows, including events not indexed yet, and never trusts a stale file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from readkit import new_lab, place, register

from cqrs_lab import domain as d
from cqrs_lab import streamindex
from cqrs_lab.lab import Lab

STREAMS = (
    "customer-c1", "customer-c2", "customer-c3", "order-o1", "order-o2", "order-o3", "order-o9",
    "customer-nobody",
)  # fmt: skip


def grow(lab: Lab, *, name: str = "Ada") -> None:
    lab.send_many([register("c1", name), register("c2", "Bob"), register("c3", "Cy")])
    lab.sync()
    lab.send_many([place("o1", "c1"), place("o2", "c1", 2), place("o3", "c2")])
    lab.send(d.RenameCustomer(customer_id="c1", name=f"{name} L"))
    lab.sync()
    lab.send(d.ShipOrder(order_id="o2"))
    lab.send(d.ChangeCustomerAddress(customer_id="c2", address="2 Side St"))
    lab.send(d.DeleteCustomer(customer_id="c1"))
    lab.sync()


def scanned(lab: Lab, stream_id: str, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """The history as a scan of the log finds it (the tail never indexed)."""
    with monkeypatch.context() as patch:
        patch.setattr(streamindex, "TAIL", 10**9)
        fresh = Lab.open(lab.path)
        try:
            return fresh.history(stream_id)
        finally:
            fresh.close()


def index_files(lab: Lab) -> list[str]:
    return sorted(p.name for p in (lab.path / "read" / "streams").rglob("*.parquet"))


def test_history_through_the_index_equals_a_scan_of_the_log_as_the_log_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = new_lab(tmp_path / "lab")
    grow(lab)
    monkeypatch.setattr(streamindex, "TAIL", 2)
    monkeypatch.setattr(streamindex, "MAX_FILES", 2)

    for step in range(3):
        for stream_id in STREAMS:
            pd.testing.assert_frame_equal(
                lab.history(stream_id), scanned(lab, stream_id, monkeypatch), obj=stream_id
            )
        lab.send_many([place(f"o{4 + step}", "c2"), d.RenameCustomer(customer_id="c3", name="C")])
        lab.sync()
    assert index_files(lab)  # the histories did read the index
    assert len(list((tmp_path / "lab" / "read" / "streams" / "order").glob("*.parquet"))) <= 2


def test_the_events_after_the_last_indexed_one_come_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = new_lab(tmp_path / "lab")
    grow(lab)
    monkeypatch.setattr(streamindex, "TAIL", 1)
    lab.history("order-o1")
    monkeypatch.setattr(streamindex, "TAIL", 100)
    lab.send(d.CancelOrder(order_id="o1", reason="changed their mind"))

    history = lab.history("order-o1")

    assert history.event_type.tolist() == ["OrderPlaced", "OrderCancelled"]
    assert history.status.tolist() == ["open", "cancelled"]


def test_an_index_file_made_from_another_log_is_removed_and_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(streamindex, "TAIL", 1)
    first, other = new_lab(tmp_path / "first"), new_lab(tmp_path / "other")
    grow(first)
    grow(other, name="Alma")  # the same shape, other names
    first.history("customer-c1")
    first.history("order-o1")
    shutil.copytree(first.path / "read" / "streams", other.path / "read" / "streams")
    copied = index_files(other)

    history = other.history("customer-c1")

    assert history.name.tolist() == ["Alma", "Alma L", "Alma L"]
    assert index_files(other) == copied  # the same ranges, rewritten from this lab's log
    other.history("order-o1")
    pd.testing.assert_frame_equal(
        other.history("customer-c1"), scanned(other, "customer-c1", monkeypatch)
    )
