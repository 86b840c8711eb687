"""The notebook widgets driven as a person would, by filling boxes and clicking (Button.click)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from labkit import new_lab

from cqrs_lab import domain as d
from cqrs_lab.lab import Lab
from cqrs_lab.widgets import CommandConsole, CommandForm, EventBrowser, HistoryScrubber


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    with new_lab(tmp_path / "lab") as lab:
        yield lab


def register_form(lab: Lab) -> CommandForm:
    form = CommandForm(lab, d.RegisterCustomer)
    return form.fill(customer_id="c-1", name="Ada", address="1 Loop Rd")


def test_submitting_a_form_sends_the_command_and_shows_the_event(lab: Lab) -> None:
    form = register_form(lab)
    form.submit.click()

    assert form.last_result is not None and form.last_result.accepted
    assert list(lab.events()["event_type"]) == ["CustomerRegistered"]
    assert "CustomerRegistered" in form.result.value and "customer-c-1" in form.result.value


def test_the_form_sends_as_the_actor_typed_in_it(lab: Lab) -> None:
    form = register_form(lab)
    form.actor.value = "carol@support"
    form.submit.click()

    assert list(lab.events()["actor"]) == ["carol@support"]


def test_a_form_with_an_unreadable_field_marks_it_and_sends_nothing(lab: Lab) -> None:
    form = CommandForm(lab, d.PlaceOrder).fill(
        order_id="o-1", customer_id="c-1", product="Pen", quantity="two", unit_price="1.20"
    )
    form.submit.click()

    assert form.last_result is None
    assert "quantity must be an integer" in form.problems["quantity"].value
    assert form.problems["unit_price"].value == ""
    assert "Nothing sent" in form.result.value
    assert lab.events().empty


def test_fixing_the_field_clears_its_message_and_sends(lab: Lab) -> None:
    register_form(lab).submit.click()
    lab.sync()
    form = CommandForm(lab, d.PlaceOrder).fill(
        order_id="o-1", customer_id="c-1", product="Pen", quantity="two", unit_price="1.20"
    )
    form.submit.click()
    form.fill(quantity="2").submit.click()

    assert form.problems["quantity"].value == ""
    assert form.last_result is not None and form.last_result.accepted


def test_a_broken_rule_shows_the_rejection_and_records_it(lab: Lab) -> None:
    form = CommandForm(lab, d.DeleteCustomer).fill(customer_id="c-404")
    form.submit.click()

    assert form.last_result is not None and form.last_result.status == "rejected"
    assert "rejected" in form.result.value and "c-404" in form.result.value
    assert list(lab.events()["event_type"]) == ["CommandRejected"]


def test_on_sent_hears_of_every_send(lab: Lab) -> None:
    heard = []
    form = CommandForm(lab, d.RegisterCustomer, on_sent=heard.append)
    form.fill(customer_id="c-1", name="Ada", address="1 Loop Rd").submit.click()

    assert [result.status for result in heard] == ["accepted"]


def test_the_console_offers_every_command_and_swaps_its_form(lab: Lab) -> None:
    console = CommandConsole(lab)

    assert list(console.choice.options) == list(d.COMMANDS)
    console.choice.value = "RegisterCustomer"
    console.form.fill(customer_id="c-7", name="Grace", address="7 Heap Ave").submit.click()
    console.choice.value = "RenameCustomer"

    assert console.form.command_type is d.RenameCustomer
    assert console.children[1] is console.form
    console.form.fill(customer_id="c-7", name="Grace Hopper").submit.click()
    assert list(lab.events()["event_type"]) == ["CustomerRegistered", "CustomerRenamed"]


def test_the_event_browser_filters_by_service_type_and_stream(lab: Lab) -> None:
    register_form(lab).submit.click()
    lab.send(d.RegisterCustomer(customer_id="c-2", name="Alan", address="2 Stack St"))
    lab.send(d.DeleteCustomer(customer_id="c-9"))
    lab.sync()
    browser = EventBrowser(lab)

    assert len(browser.frame()) == 5  # 3 in the Customer log, 2 replicas in the Order log
    browser.service.value = "customer"
    assert len(browser.frame()) == 3
    browser.event_type.value = "CommandRejected"
    assert list(browser.frame()["stream_id"].str[:10]) == ["rejection-"]
    browser.event_type.value = "(all)"
    browser.stream_id.value = "customer-c-2"
    browser.refresh_button.click()
    assert list(browser.frame()["stream_id"]) == ["customer-c-2"]
    assert "customer-c-2" in browser.table.value and "customer-c-1" not in browser.table.value


def test_the_history_scrubber_follows_its_slider(lab: Lab) -> None:
    register_form(lab).submit.click()
    lab.sync()
    for order_id in ("o-1", "o-2"):
        lab.send(
            d.PlaceOrder(
                order_id=order_id,
                customer_id="c-1",
                product="Pen",
                quantity=1,
                unit_price=Decimal("1.20"),
            )
        )
    lab.send(d.ShipOrder(order_id="o-1"))
    scrubber = HistoryScrubber(lab)  # 1 registered + 1 replica + 2 placed + 1 shipped

    assert scrubber.slider.max == 5
    assert scrubber.counts() == {"open": 1, "shipped": 1, "cancelled": 0}
    picture = scrubber.image.value
    scrubber.slider.value = 3

    assert scrubber.counts() == {"open": 1, "shipped": 0, "cancelled": 0}
    assert "After event 3 of 5" in scrubber.caption.value
    assert scrubber.image.value != picture and scrubber.image.value[:4] == b"\x89PNG"
