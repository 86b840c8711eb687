"""The headless path: `cqrs-lab demo`, `send` and `sync`, and the demo generator's determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from cqrs_lab.cli import main
from cqrs_lab.demo import generate
from cqrs_lab.lab import Lab


def digests(lab: Path) -> dict[str, str]:
    """Every file of both logs (not the lock files, which hold a process id) by its sha256."""
    return {
        str(path.relative_to(lab)): hashlib.sha256(path.read_bytes()).hexdigest()
        for service in ("customer", "order")
        for path in sorted((lab / service).rglob("*"))
        if path.is_file() and not path.name.endswith(("LOCK", ".lock"))
    }


def test_the_same_seed_gives_byte_identical_logs_and_another_seed_does_not(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", customers=25, seed=4)
    second = generate(tmp_path / "b", customers=25, seed=4)
    generate(tmp_path / "c", customers=25, seed=5)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert digests(tmp_path / "a") != digests(tmp_path / "c")
    assert (first.events, first.rejected) == (second.events, second.rejected)
    assert first.customers == 25


def test_a_demo_history_holds_every_kind_of_event_a_shop_has(tmp_path: Path) -> None:
    report = generate(tmp_path / "shop", events=3000, seed=1)
    assert report.events >= 3000
    with Lab.open(tmp_path / "shop") as lab:
        lab.sync()
        events = lab.events()
        kinds = set(events["event_type"])
        actors = set(events["actor"])
        months = events["recorded_at"].dt.month.nunique()
    assert {
        "CustomerRegistered", "CustomerRenamed", "CustomerAddressChanged", "CustomerDeleted",
        "OrderPlaced", "OrderShipped", "OrderCancelled", "CommandRejected", "CustomerReplicated",
    } <= kinds  # fmt: skip
    assert {"alice@shop", "carol@support", "dave@warehouse", "order-service"} <= actors
    assert months >= 3  # times spread over months
    assert (events["actor"] == "order-service").any()  # cascades happened


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    path = tmp_path / "lab"
    Lab.create(path).close()
    return path


def test_send_and_sync_from_the_command_line(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "send", str(lab), "RegisterCustomer",
        "--customer-id", "c-1", "--name=Ada Lovelace", "--address", "1 Loop Rd",
    )  # fmt: skip
    assert status == 0
    assert "RegisterCustomer: accepted" in out and "CustomerRegistered customer-c-1 v1" in out
    status, out, _ = run(capsys, "sync", str(lab))
    assert status == 0 and "delivered 1 Customer events" in out
    status, out, _ = run(
        capsys, "send", str(lab), "PlaceOrder", "--order-id", "o-1", "--customer-id", "c-1",
        "--product", "Pen", "--quantity", "2", "--unit-price", "1.20", "--actor", "bob",
    )  # fmt: skip
    assert status == 0 and "OrderPlaced order-o-1 v1" in out
    with Lab.open(lab) as opened:
        placed = opened.events(event_type="OrderPlaced")
    assert placed["actor"].tolist() == ["bob"]


def test_a_rejected_command_is_recorded_and_exits_1(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "send", str(lab), "DeleteCustomer", "--customer-id", "nobody")
    assert status == 1
    assert "rejected" in out and "nobody" in out
    with Lab.open(lab) as opened:
        assert opened.events()["event_type"].tolist() == ["CommandRejected"]


@pytest.mark.parametrize(
    ("words", "named"),
    [
        (["Frobnicate", "--x", "1"], "Frobnicate"),
        (["PlaceOrder", "--order-id", "o-1"], "'customer_id'"),
        (["RenameCustomer", "--customer-id", "c-1", "--name", "A", "--colour", "red"], "'colour'"),
        (
            [
                "PlaceOrder",
                "--order-id",
                "o",
                "--customer-id",
                "c",
                "--product",
                "p",
                "--quantity",
                "lots",
                "--unit-price",
                "1",
            ],
            "'quantity'",
        ),
        (["RenameCustomer", "--customer-id"], "'customer-id' has no value"),
        (["RenameCustomer", "c-1"], "c-1"),
    ],
    ids=["unknown command", "missing field", "unknown field", "wrong type", "no value", "no flag"],
)
def test_bad_input_gets_one_line_naming_it_and_changes_nothing(
    lab: Path, capsys: pytest.CaptureFixture[str], words: list[str], named: str
) -> None:
    before = digests(lab)
    status, out, err = run(capsys, "send", str(lab), *words)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and named in err
    assert digests(lab) == before


def test_the_installed_command_runs_a_demo_and_a_query(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cqrs_lab.cli"]
    made = subprocess.run(
        [*command, "demo", str(tmp_path / "shop"), "--customers", "10", "--seed", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "events (10 customers" in made.stdout
    asked = subprocess.run(
        [*command, "sql", str(tmp_path / "shop"), "SELECT count(*) AS n FROM customers",
         "--format", "csv"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert asked.stdout.splitlines() == ["n", "10"]


def test_a_read_stores_spill_folder_is_private_and_removed_when_the_lab_closes(lab: Path) -> None:
    opened = Lab.open(lab)
    spill = Path(
        opened.read.con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    )
    view = opened.as_of(position=0)
    view_spill = Path(
        view.store.con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    )
    assert spill.is_dir() and view_spill.is_dir() and spill != view_spill
    assert not spill.is_relative_to(Path.cwd())  # not DuckDB's default <cwd>/.tmp
    view.close()
    opened.close()
    assert not spill.exists() and not view_spill.exists()
