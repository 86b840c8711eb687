"""The Voilà dashboard in chromium: pick a command, type, click Send, see the read model change."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserkit import ROOT, Server, start_voila
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


@pytest.fixture
def voila(tmp_path: Path) -> Iterator[Server]:
    server = start_voila(tmp_path / "voila", ROOT / "dashboards" / "shop.ipynb")
    yield server
    survivors = server.stop()
    assert not survivors, f"processes outlived Voila: {survivors}"


def status_without_token(server: Server) -> int:
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    finally:
        connection.close()


def test_an_order_sent_from_the_dashboard_appears_in_the_live_orders_table(
    voila: Server, page: Page
) -> None:
    assert status_without_token(voila) in (302, 401, 403)  # the page needs the token

    page.goto(voila.address())
    command = page.get_by_label("command", exact=True)
    expect(command).to_be_visible(timeout=90_000)  # Voilà runs the notebook first
    orders_tab = page.get_by_role("tab", name="orders", exact=True)

    command.select_option("RegisterCustomer")
    page.get_by_label("customer_id", exact=True).fill("c-8")
    page.get_by_label("name", exact=True).fill("Barbara Liskov")
    page.get_by_label("address", exact=True).fill("8 Substitution St")
    page.get_by_role("button", name="Send RegisterCustomer").click()
    customers = page.locator(".widget-html table").filter(has_text="address").first
    expect(customers.locator("tr", has_text="c-8")).to_contain_text("Barbara Liskov")

    command.select_option("PlaceOrder")
    page.get_by_label("order_id", exact=True).fill("o-8")
    page.get_by_label("customer_id", exact=True).fill("c-8")
    page.get_by_label("product", exact=True).fill("Chalk")
    page.get_by_label("quantity", exact=True).fill("lots")
    page.get_by_label("unit_price", exact=True).fill("0.50")
    page.get_by_role("button", name="Send PlaceOrder").click()
    expect(page.get_by_text("quantity must be an integer, got 'lots'")).to_be_visible()

    page.get_by_label("quantity", exact=True).fill("3")
    page.get_by_role("button", name="Send PlaceOrder").click()
    expect(page.get_by_text("PlaceOrder: accepted")).to_be_visible()
    orders_tab.click()
    orders = page.locator(".widget-html table").filter(has_text="product")
    new_row = orders.get_by_role("row").filter(has=page.get_by_role("cell", name="o-8", exact=True))
    expect(new_row).to_contain_text("Barbara Liskov")
    expect(new_row).to_contain_text("1.50")
    expect(new_row).to_contain_text("open")
    events = page.locator(".widget-html table").filter(has_text="event_type").first
    expect(events.locator("tr", has_text="order-o-8")).to_contain_text("OrderPlaced")
    new_row.scroll_into_view_if_needed()
