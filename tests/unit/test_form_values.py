"""Turning what a person typed into a form into a command: every unreadable field is named."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cqrs_lab import domain as d
from cqrs_lab.widgets import values_to_command

PLACE = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "product": "Pen",
    "quantity": "2",
    "unit_price": "1.20",
}


def test_text_typed_into_a_form_becomes_a_typed_command() -> None:
    conversion = values_to_command(d.PlaceOrder, PLACE)

    assert conversion.problems == {}
    assert conversion.command == d.PlaceOrder(
        order_id="o-1", customer_id="c-1", product="Pen", quantity=2, unit_price=Decimal("1.20")
    )


def test_a_price_keeps_its_exact_decimal_spelling() -> None:
    command = values_to_command(d.PlaceOrder, {**PLACE, "unit_price": "19.90"}).command

    assert isinstance(command, d.PlaceOrder)
    assert str(command.unit_price) == "19.90"


def test_spaces_around_a_value_are_ignored() -> None:
    command = values_to_command(d.PlaceOrder, {**PLACE, "quantity": " 3 ", "order_id": " o-2 "})

    assert command.command == d.PlaceOrder(
        order_id="o-2", customer_id="c-1", product="Pen", quantity=3, unit_price=Decimal("1.20")
    )


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        ("quantity", "two", "quantity must be an integer, got 'two'"),
        ("quantity", "2.5", "quantity must be an integer, got '2.5'"),
        ("unit_price", "cheap", "unit_price must be a decimal number, got 'cheap'"),
        ("unit_price", "NaN", "unit_price must be a finite decimal number, got 'NaN'"),
    ],
)
def test_an_unreadable_field_is_named_with_what_was_typed(
    field: str, typed: str, message: str
) -> None:
    conversion = values_to_command(d.PlaceOrder, {**PLACE, field: typed})

    assert conversion.command is None
    assert conversion.problems == {field: message}


def test_every_unreadable_field_is_reported_at_once() -> None:
    conversion = values_to_command(d.PlaceOrder, {**PLACE, "quantity": "x", "unit_price": "y"})

    assert sorted(conversion.problems) == ["quantity", "unit_price"]


def test_rules_are_left_to_the_service_so_they_get_recorded() -> None:
    # A negative quantity is readable: the service rejects it and records the rejection.
    conversion = values_to_command(d.PlaceOrder, {**PLACE, "quantity": "-1"})

    assert isinstance(conversion.command, d.PlaceOrder)
    assert conversion.command.quantity == -1


@pytest.mark.parametrize("command_type", list(d.COMMANDS.values()))
def test_every_command_can_be_built_from_a_form(command_type: type[d.Command]) -> None:
    sample = {"quantity": "1", "unit_price": "1.00"}
    values = {name: sample.get(name, "x-1") for name in command_type.__dataclass_fields__}

    assert isinstance(values_to_command(command_type, values).command, command_type)
