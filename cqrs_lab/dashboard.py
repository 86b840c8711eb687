"""The shop dashboard that `make dashboard` serves with Voilà: send commands, watch the read side.

    >>> ShopDashboard(lab)       # a console, the live read models and the event browser, one page
    >>> shop_dashboard()         # the same on a new small shop in a temp folder (what Voilà shows)

Every command sent from the console is followed by `lab.sync()`, so the page shows the read models
right after the messages were delivered; the sync report says what the catch-up did.
"""

from __future__ import annotations

from html import escape

import ipywidgets as w
import pandas as pd

from cqrs_lab.lab import Lab
from cqrs_lab.services import SendResult
from cqrs_lab.teaching import new_lab, small_shop
from cqrs_lab.widgets import CommandConsole, EventBrowser

CUSTOMERS = """
SELECT customer_id, name, address, status, version
FROM customers
ORDER BY customer_id
"""
ORDERS = """
SELECT order_id, customer_id, customer_name, product, quantity, amount, status
FROM orders
ORDER BY order_id
"""
SUMMARY = """
SELECT customer_id, customer_name, orders, open_orders, shipped_orders, cancelled_orders, revenue
FROM customer_order_summary
ORDER BY customer_id
"""
READ_MODELS = {"customers": CUSTOMERS, "orders": ORDERS, "customer_order_summary": SUMMARY}


class ShopDashboard(w.VBox):
    """A command console above the read models and the event log, all refreshed after each send."""

    def __init__(self, lab: Lab, *, actor: str = "dashboard") -> None:
        self.lab = lab
        self.console = CommandConsole(lab, actor=actor, on_sent=self.after_send)
        self.sync_report = w.HTML()
        self.tables = {name: w.HTML() for name in READ_MODELS}
        self.events = EventBrowser(lab, limit=20)
        tabs = w.Tab(children=list(self.tables.values()))
        for index, name in enumerate(self.tables):
            tabs.set_title(index, name)
        sections = [
            w.HTML("<h2>Send a command</h2>"),
            self.console,
            self.sync_report,
            w.HTML("<h2>Read models (DuckDB)</h2>"),
            tabs,
            w.HTML("<h2>Event log (both services)</h2>"),
            self.events,
        ]
        super().__init__(sections)
        self.refresh()

    def after_send(self, result: SendResult) -> None:
        """Deliver messages, catch the read models up, then redraw: what the console calls."""
        report = self.lab.sync()
        summary = escape(str(report)).replace("\n", "<br>")
        self.sync_report.value = f"<small>after {escape(result.status)} command: {summary}</small>"
        self.refresh()

    def refresh(self) -> None:
        """Query every read model again and redraw the tables and the event log."""
        for name, query in READ_MODELS.items():
            self.tables[name].value = html_table(self.lab.sql(query))
        self.events.refresh()

    def __repr__(self) -> str:
        return f"ShopDashboard({self.lab.path})"


def shop_dashboard(*, seed: int = 1) -> ShopDashboard:
    """A dashboard on a new lab (temp folder, removed at exit) holding the small shop."""
    lab = new_lab("dashboard", seed=seed)
    small_shop(lab)
    return ShopDashboard(lab)


def html_table(frame: pd.DataFrame) -> str:
    """A read model as an HTML table, or a note when it is empty."""
    return frame.to_html(index=False, na_rep="") if len(frame) else "<i>no rows yet</i>"
