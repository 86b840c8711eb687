"""Read-model snapshots: time travel that starts from a snapshot answers exactly what a fold from
the first event answers, and a snapshot made from a log that is no longer there is not used."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from readkit import READ_MODELS, assert_same_tables, new_lab, place, register

from cqrs_lab import domain as d
from cqrs_lab import snapshots
from cqrs_lab.lab import Lab
from cqrs_lab.timetravel import AsOf

SUMMARY = "SELECT * FROM customer_order_summary ORDER BY customer_id"


def busy_shop(path: Path, *, second_name: str = "Bob") -> Lab:
    """Registrations, orders, renames (denormalised names), shipping, a deletion and its cascade."""
    lab = new_lab(path)
    lab.send_many([register("c1", "Ada"), register("c2", second_name), register("c3", "Cy")])
    lab.sync()
    lab.send_many([place("o1", "c1"), place("o2", "c1", 2), place("o3", "c2"), place("o4", "c3")])
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada L"))
    lab.sync()
    lab.send(d.ShipOrder(order_id="o2"))
    lab.send(d.ChangeCustomerAddress(customer_id="c2", address="2 Side St"))
    lab.send(place("o5", "c1", 3, "2.50"))
    lab.send(d.RenameCustomer(customer_id="c1", name="Ada Lovelace"))
    lab.sync()
    lab.send(d.DeleteCustomer(customer_id="c1"))
    lab.sync()
    lab.send_many([place("o6", "c2"), d.RenameCustomer(customer_id="c2", name="Bo")])
    lab.sync()
    return lab


def rows(view: AsOf) -> dict[str, Any]:
    return {name: view.store.table(name) for name in READ_MODELS}


def plain(lab: Lab, position: int, monkeypatch: pytest.MonkeyPatch) -> AsOf:
    """The view folded from the first event (snapshots far apart: none is made or used)."""
    with monkeypatch.context() as patch:
        patch.setattr(snapshots, "EVERY", 10**9)
        return lab.as_of(position=position)


def test_every_cut_from_snapshots_equals_the_fold_from_the_first_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = busy_shop(tmp_path / "lab")
    monkeypatch.setattr(snapshots, "EVERY", 3)
    total = len(lab.events())

    for n in range(total, -1, -1):  # the first, longest trip leaves the snapshots
        view, expected = lab.as_of(position=n), plain(lab, n, monkeypatch)
        assert_same_tables(rows(view), rows(expected), f"as_of(position={n})")
        pd.testing.assert_frame_equal(view.sql(SUMMARY), expected.sql(SUMMARY))

    made = snapshots.found(tmp_path / "lab")
    assert [s.events for s in made] == list(range(3, total + 1, 3))
    assert all((s.path / "orders.parquet").is_file() for s in made)


def test_snapshots_left_on_the_way_forward_give_the_same_cuts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = busy_shop(tmp_path / "lab")
    monkeypatch.setattr(snapshots, "EVERY", 2)
    total = len(lab.events())

    for n in range(total + 1):  # each trip starts from the snapshot the one before left
        view, expected = lab.as_of(position=n), plain(lab, n, monkeypatch)
        assert_same_tables(rows(view), rows(expected), f"as_of(position={n})")

    assert [s.events for s in snapshots.found(tmp_path / "lab")] == list(range(2, total + 1, 2))


def test_a_time_cut_from_a_snapshot_equals_the_live_read_models_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = busy_shop(tmp_path / "lab")
    monkeypatch.setattr(snapshots, "EVERY", 4)
    last = lab.events().recorded_at.max().to_pydatetime()

    view = lab.as_of(time=last)

    assert snapshots.found(tmp_path / "lab")
    assert_same_tables(rows(view), {n: lab.read.table(n) for n in READ_MODELS}, "as_of(end)")
    pd.testing.assert_frame_equal(view.sql(SUMMARY), lab.sql(SUMMARY))


def test_a_snapshot_made_from_another_log_is_removed_and_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(snapshots, "EVERY", 3)
    first = busy_shop(tmp_path / "first")
    first.as_of(position=len(first.events()))
    other = busy_shop(tmp_path / "other", second_name="Brenda")  # same shape, other names
    shutil.copytree(snapshots.folder(tmp_path / "first"), snapshots.folder(tmp_path / "other"))
    copied = {s.path.name: s.hashes for s in snapshots.found(tmp_path / "other")}
    assert copied

    for n in range(len(other.events()), 0, -1):
        view, expected = other.as_of(position=n), plain(other, n, monkeypatch)
        assert_same_tables(rows(view), rows(expected), f"as_of(position={n})")
    assert "Brenda" in set(other.as_of(position=4).sql("SELECT name FROM customers").name)

    remade = {s.path.name: s.hashes for s in snapshots.found(tmp_path / "other")}
    assert copied.keys() <= remade.keys()
    assert all(remade[name] != copied[name] for name in copied)  # rebuilt from this log


def test_snapshots_are_written_by_the_package_while_user_sql_still_cannot_write_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lab = busy_shop(tmp_path / "lab")
    monkeypatch.setattr(snapshots, "EVERY", 5)

    view = lab.as_of(position=len(lab.events()) - 1)

    assert snapshots.found(tmp_path / "lab")
    target = tmp_path / "lab" / "read" / "snapshots" / "stolen.parquet"
    with pytest.raises(Exception, match=r"(?i)permission|disabled|not allowed|read-only|only one"):
        view.sql(f"COPY (SELECT * FROM customers) TO '{target}'")
    assert not target.exists()
