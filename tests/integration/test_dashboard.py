"""The Voilà dashboard's logic without a browser: send through its console, see the read side."""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from labkit import new_lab

from cqrs_lab.dashboard import ShopDashboard, shop_dashboard
from cqrs_lab.teaching import small_shop

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[ShopDashboard]:
    with new_lab(tmp_path / "lab") as lab:
        small_shop(lab)
        yield ShopDashboard(lab)


def send(dashboard: ShopDashboard, command: str, **values: str) -> None:
    dashboard.console.choice.value = command
    dashboard.console.form.fill(**values).submit.click()


def test_the_dashboard_opens_on_the_small_shop(dashboard: ShopDashboard) -> None:
    # "<tr>" counts data rows: the header row has a style
    assert dashboard.tables["customers"].value.count("<tr>") == 3
    assert dashboard.tables["orders"].value.count("<tr>") == 5
    assert "Grace Hopper" in dashboard.tables["customer_order_summary"].value
    assert "OrderShipped" in dashboard.events.table.value


def test_a_registered_customer_appears_in_the_customers_table_at_once(
    dashboard: ShopDashboard,
) -> None:
    send(dashboard, "RegisterCustomer", customer_id="c-8", name="Barbara", address="8 Sub St")
    assert "<td>c-8</td>" in dashboard.tables["customers"].value
    assert "customer-c-8" in dashboard.events.table.value
    assert "after accepted command" in dashboard.sync_report.value


def test_an_order_for_a_new_customer_is_accepted_because_the_console_syncs(
    dashboard: ShopDashboard,
) -> None:
    send(dashboard, "RegisterCustomer", customer_id="c-8", name="Barbara", address="8 Sub St")
    order = dict(order_id="o-8", customer_id="c-8", product="Chalk", quantity="3")
    send(dashboard, "PlaceOrder", **order, unit_price="0.50")
    assert dashboard.console.form.last_result is not None
    assert dashboard.console.form.last_result.accepted
    orders = dashboard.tables["orders"].value
    assert "<td>o-8</td>" in orders and "<td>Barbara</td>" in orders and "<td>1.50</td>" in orders


def test_deleting_a_customer_shows_the_cascade_in_the_orders_table(
    dashboard: ShopDashboard,
) -> None:
    send(dashboard, "DeleteCustomer", customer_id="c-2")
    orders = dashboard.lab.sql("SELECT order_id, status FROM orders WHERE customer_id = 'c-2'")
    assert set(orders["status"]) == {"cancelled"}
    assert dashboard.tables["orders"].value.count("<td>cancelled</td>") == 2


def test_a_rejected_command_changes_no_table_but_shows_why(dashboard: ShopDashboard) -> None:
    before = {name: table.value for name, table in dashboard.tables.items()}
    send(dashboard, "RenameCustomer", customer_id="c-99", name="Nobody")
    assert "rejected" in dashboard.console.form.result.value
    assert {name: table.value for name, table in dashboard.tables.items()} == before


def test_unreadable_input_is_not_sent_and_the_tables_stay(dashboard: ShopDashboard) -> None:
    events = len(dashboard.lab.events())
    order = dict(order_id="o-9", customer_id="c-1", product="Pen", quantity="lots")
    send(dashboard, "PlaceOrder", **order, unit_price="1")
    assert "got 'lots'" in unescape(dashboard.console.form.problems["quantity"].value)
    assert len(dashboard.lab.events()) == events


def test_the_served_dashboard_keeps_its_lab_outside_the_repository() -> None:
    dashboard = shop_dashboard()
    try:
        assert REPO not in dashboard.lab.path.resolve().parents
        assert dashboard.tables["orders"].value.count("<tr>") == 5
    finally:
        dashboard.lab.close()
