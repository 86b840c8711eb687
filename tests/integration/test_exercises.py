"""Each notebook's exercise checker: a hint before an answer, yes to the right one, no otherwise.

The checkers work the answer out from the lab, so each test does the exercise for real and then
asks with the right answer and with a near miss.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cqrs_lab import domain as d
from cqrs_lab.exercises import (
    check_cascade_size,
    check_damaged_file,
    check_open_orders,
    check_rename,
    check_status_before_deletion,
)
from cqrs_lab.faults import flip_byte
from cqrs_lab.lab import Lab
from cqrs_lab.teaching import new_lab, small_shop

OPEN_ORDERS = """
SELECT customer_id, count(*) FILTER (WHERE status = 'open') AS open_orders
FROM orders
GROUP BY customer_id
ORDER BY customer_id
"""


@pytest.fixture
def shop() -> Iterator[Lab]:
    lab = new_lab("exercise-test")
    small_shop(lab)
    yield lab
    lab.close()


def test_every_checker_gives_a_hint_before_an_answer(shop: Lab) -> None:
    for verdict in (
        check_rename(shop, None),
        check_open_orders(shop, None),
        check_cascade_size(shop, None),
        check_status_before_deletion(shop, None),
        check_damaged_file(shop.customer_log, None),
    ):
        assert not verdict.correct
        assert str(verdict).startswith("Not yet: ")


def test_the_rename_exercise_wants_the_version_after_the_rename(shop: Lab) -> None:
    shop.send(d.RegisterCustomer(customer_id="c-42", name="Barbara Liskov", address="4 Queue Ln"))
    assert not check_rename(shop, 2).correct  # registered, not yet renamed
    shop.send(d.RenameCustomer(customer_id="c-42", name="Barbara"))

    assert check_rename(shop, 2).correct
    assert not check_rename(shop, 1).correct
    assert not check_rename(shop, "2").correct


def test_the_rename_exercise_wants_the_name_it_asked_for(shop: Lab) -> None:
    shop.send(d.RegisterCustomer(customer_id="c-42", name="Barbara Liskov", address="4 Queue Ln"))
    shop.send(d.RenameCustomer(customer_id="c-42", name="Babs"))

    assert not check_rename(shop, 2).correct


def test_the_open_orders_exercise_compares_with_the_read_model(shop: Lab) -> None:
    right = shop.sql(OPEN_ORDERS)
    wrong = right.assign(open_orders=right["open_orders"] + 1)

    assert check_open_orders(shop, right).correct
    assert check_open_orders(shop, right.iloc[::-1]).correct  # any row order
    assert not check_open_orders(shop, wrong).correct
    assert not check_open_orders(shop, right.rename(columns={"open_orders": "n"})).correct
    assert not check_open_orders(shop, 4).correct


def test_the_cascade_exercise_counts_what_the_deletion_cancelled(shop: Lab) -> None:
    shop.send(d.DeleteCustomer(customer_id="c-2"))
    assert not check_cascade_size(shop, 2).correct  # not delivered yet
    shop.sync()

    assert check_cascade_size(shop, 2).correct  # o-3 and o-4 were open
    assert not check_cascade_size(shop, 1).correct


def test_the_time_travel_exercise_reads_the_status_just_before_the_deletion(shop: Lab) -> None:
    shop.send(d.ShipOrder(order_id="o-3"))
    shop.send(d.DeleteCustomer(customer_id="c-2"))
    shop.sync()

    assert check_status_before_deletion(shop, "shipped").correct
    assert not check_status_before_deletion(shop, "open").correct


def test_the_tampering_exercise_wants_the_file_verify_names(shop: Lab) -> None:
    log = shop.order_log
    damaged, untouched = log.files()[0], log.files()[-1]
    assert damaged != untouched
    assert not check_damaged_file(log, damaged.name).correct  # nothing wrong yet
    flip_byte(damaged, 100)

    assert check_damaged_file(log, damaged.name).correct
    assert check_damaged_file(log, str(damaged)).correct  # a full path names it too
    assert not check_damaged_file(log, untouched.name).correct
