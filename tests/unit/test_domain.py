"""The Customer and Order aggregates: every rule, every fold, every payload round-trip."""

import dataclasses
import json
from decimal import Decimal
from functools import reduce
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqrs_lab.domain import (
    CANCELLED,
    COMMANDS,
    CUSTOMER_COMMANDS,
    CUSTOMER_EVENTS,
    EVENTS,
    OPEN,
    ORDER_COMMANDS,
    ORDER_EVENTS,
    SERVICE_OF_COMMAND,
    SHIPPED,
    STREAM_TYPES,
    CancelOrder,
    ChangeCustomerAddress,
    CommandRejected,
    Customer,
    CustomerAddressChanged,
    CustomerCommand,
    CustomerDeleted,
    CustomerEvent,
    CustomerRegistered,
    CustomerRenamed,
    CustomerReplicated,
    DeleteCustomer,
    InvalidCommandError,
    Order,
    OrderCancelled,
    OrderPlaced,
    OrderShipped,
    PlaceOrder,
    RegisterCustomer,
    RenameCustomer,
    ShipOrder,
    command_from_payload,
    command_rejected,
    command_to_payload,
    decide_customer,
    decide_order,
    event_from_log,
    event_from_payload,
    event_to_payload,
    evolve_customer,
    evolve_order,
    evolve_replica,
    replicate,
    stream_id_of,
    stream_of,
    stream_type_of,
)
from cqrs_lab.errors import CqrsLabError, DomainRejection, InvalidEventError

ADA = Customer(customer_id="c-7", name="Ada", address="1 Loop Road", deleted=False)
GONE = dataclasses.replace(ADA, deleted=True)
OPEN_ORDER = Order(
    order_id="o-1",
    customer_id="c-7",
    product="tea",
    quantity=2,
    unit_price=Decimal("19.99"),
    status=OPEN,
)


def place(**overrides: Any) -> PlaceOrder:
    fields = {
        "order_id": "o-1",
        "customer_id": "c-7",
        "product": "tea",
        "quantity": 2,
        "unit_price": Decimal("19.99"),
    }
    return PlaceOrder(**{**fields, **overrides})


def customer_rejection(state: Customer | None, command: Any) -> str:
    with pytest.raises(DomainRejection) as caught:
        decide_customer(state, command)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


def order_rejection(state: Order | None, command: Any, customer: Customer | None = ADA) -> str:
    with pytest.raises(DomainRejection) as caught:
        decide_order(state, command, customer)
    return caught.value.reason


# --- Customer: what happens ---------------------------------------------------------------------


def test_registering_a_new_customer_records_customer_registered() -> None:
    command = RegisterCustomer(customer_id="c-7", name="Ada", address="1 Loop Road")
    assert decide_customer(None, command) == [
        CustomerRegistered(customer_id="c-7", name="Ada", address="1 Loop Road")
    ]


def test_renaming_a_customer_records_the_new_name() -> None:
    events = decide_customer(ADA, RenameCustomer(customer_id="c-7", name="Ada L."))
    assert events == [CustomerRenamed(customer_id="c-7", name="Ada L.")]


def test_changing_the_address_records_the_new_address() -> None:
    events = decide_customer(ADA, ChangeCustomerAddress(customer_id="c-7", address="2 Fork St"))
    assert events == [CustomerAddressChanged(customer_id="c-7", address="2 Fork St")]


def test_deleting_a_customer_records_customer_deleted() -> None:
    assert decide_customer(ADA, DeleteCustomer(customer_id="c-7")) == [
        CustomerDeleted(customer_id="c-7")
    ]


def test_replaying_a_customer_history_with_reduce_gives_its_current_state() -> None:
    history: list[CustomerEvent] = [
        CustomerRegistered(customer_id="c-7", name="Ada", address="1 Loop Road"),
        CustomerRenamed(customer_id="c-7", name="Ada L."),
        CustomerAddressChanged(customer_id="c-7", address="2 Fork St"),
    ]
    assert reduce(evolve_customer, history, None) == Customer(
        customer_id="c-7", name="Ada L.", address="2 Fork St", deleted=False
    )


def test_a_deleted_customer_stays_as_state_marked_deleted() -> None:
    assert evolve_customer(ADA, CustomerDeleted(customer_id="c-7")) == GONE


def test_deciding_then_folding_each_command_walks_a_customer_through_its_life() -> None:
    state: Customer | None = None
    commands: list[CustomerCommand] = [
        RegisterCustomer(customer_id="c-7", name="Ada", address="1 Loop Road"),
        RenameCustomer(customer_id="c-7", name="Ada L."),
        DeleteCustomer(customer_id="c-7"),
    ]
    for command in commands:
        state = reduce(evolve_customer, decide_customer(state, command), state)
    assert state == Customer(customer_id="c-7", name="Ada L.", address="1 Loop Road", deleted=True)


def test_folding_an_event_before_its_stream_was_created_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEventError, match="CustomerRenamed for 'customer-c-7'"):
        evolve_customer(None, CustomerRenamed(customer_id="c-7", name="Ada"))
    with pytest.raises(InvalidEventError, match="OrderShipped for 'order-o-1'"):
        evolve_order(None, OrderShipped(order_id="o-1"))


# --- Customer: rules ----------------------------------------------------------------------------


def test_registering_twice_is_rejected() -> None:
    command = RegisterCustomer(customer_id="c-7", name="Ada", address="1 Loop Road")
    assert customer_rejection(ADA, command) == "customer 'c-7' is already registered"


def test_registering_the_id_of_a_deleted_customer_again_is_rejected() -> None:
    command = RegisterCustomer(customer_id="c-7", name="Ada", address="1 Loop Road")
    assert customer_rejection(GONE, command) == "customer 'c-7' is already registered"


@pytest.mark.parametrize("name", ["", "   "])
def test_registering_with_a_blank_name_is_rejected(name: str) -> None:
    command = RegisterCustomer(customer_id="c-7", name=name, address="1 Loop Road")
    assert customer_rejection(None, command) == "customer 'c-7' needs a non-blank name"


@pytest.mark.parametrize("address", ["", "\t"])
def test_registering_with_a_blank_address_is_rejected(address: str) -> None:
    command = RegisterCustomer(customer_id="c-7", name="Ada", address=address)
    assert customer_rejection(None, command) == "customer 'c-7' needs a non-blank address"


def test_registering_with_a_blank_customer_id_is_rejected() -> None:
    command = RegisterCustomer(customer_id=" ", name="Ada", address="1 Loop Road")
    assert customer_rejection(None, command) == "customer id ' ' is blank"


NON_REGISTERING_COMMANDS = [
    RenameCustomer(customer_id="c-7", name="Bea"),
    ChangeCustomerAddress(customer_id="c-7", address="2 Fork St"),
    DeleteCustomer(customer_id="c-7"),
]


@pytest.mark.parametrize("command", NON_REGISTERING_COMMANDS, ids=lambda c: type(c).__name__)
def test_any_command_on_an_unknown_customer_is_rejected(command: Any) -> None:
    assert customer_rejection(None, command) == "customer 'c-7' is not registered"


@pytest.mark.parametrize("command", NON_REGISTERING_COMMANDS, ids=lambda c: type(c).__name__)
def test_any_command_on_a_deleted_customer_is_rejected(command: Any) -> None:
    assert customer_rejection(GONE, command) == "customer 'c-7' is deleted"


def test_renaming_to_the_same_name_is_rejected() -> None:
    command = RenameCustomer(customer_id="c-7", name="Ada")
    assert customer_rejection(ADA, command) == "customer 'c-7' is already named 'Ada'"


@pytest.mark.parametrize("name", ["", "  "])
def test_renaming_to_a_blank_name_is_rejected(name: str) -> None:
    command = RenameCustomer(customer_id="c-7", name=name)
    assert customer_rejection(ADA, command) == "customer 'c-7' cannot be renamed to a blank name"


def test_changing_to_the_same_address_is_rejected() -> None:
    command = ChangeCustomerAddress(customer_id="c-7", address="1 Loop Road")
    assert customer_rejection(ADA, command) == "customer 'c-7' already lives at '1 Loop Road'"


@pytest.mark.parametrize("address", ["", " \n"])
def test_changing_to_a_blank_address_is_rejected(address: str) -> None:
    command = ChangeCustomerAddress(customer_id="c-7", address=address)
    assert customer_rejection(ADA, command) == "customer 'c-7' cannot move to a blank address"


def test_a_domain_rejection_belongs_to_the_error_family() -> None:
    with pytest.raises(CqrsLabError):
        decide_customer(None, DeleteCustomer(customer_id="c-7"))


# --- Order: what happens ------------------------------------------------------------------------


def test_placing_an_order_for_a_known_customer_records_order_placed() -> None:
    assert decide_order(None, place(), ADA) == [
        OrderPlaced(
            order_id="o-1",
            customer_id="c-7",
            product="tea",
            quantity=2,
            unit_price=Decimal("19.99"),
        )
    ]


def test_shipping_an_open_order_records_order_shipped() -> None:
    assert decide_order(OPEN_ORDER, ShipOrder(order_id="o-1"), None) == [
        OrderShipped(order_id="o-1")
    ]


def test_cancelling_an_open_order_records_the_reason() -> None:
    events = decide_order(OPEN_ORDER, CancelOrder(order_id="o-1", reason="changed mind"), None)
    assert events == [OrderCancelled(order_id="o-1", reason="changed mind")]


def test_replaying_an_order_history_with_reduce_gives_its_current_state() -> None:
    placed = decide_order(None, place(), ADA)
    assert reduce(evolve_order, placed, None) == OPEN_ORDER
    shipped = [*placed, OrderShipped(order_id="o-1")]
    assert reduce(evolve_order, shipped, None) == dataclasses.replace(OPEN_ORDER, status=SHIPPED)
    cancelled = [*placed, OrderCancelled(order_id="o-1", reason="x")]
    assert reduce(evolve_order, cancelled, None) == dataclasses.replace(
        OPEN_ORDER, status=CANCELLED
    )


def test_the_order_services_customer_replica_is_folded_from_customer_events() -> None:
    consumed: list[CustomerEvent] = [
        CustomerRegistered(customer_id="c-7", name="Ada", address="1 Loop Road"),
        CustomerRenamed(customer_id="c-7", name="Ada L."),
    ]
    replica = reduce(evolve_customer, consumed, None)
    assert decide_order(None, place(), replica) == decide_order(None, place(), ADA)
    replica = evolve_customer(replica, CustomerDeleted(customer_id="c-7"))
    assert order_rejection(None, place(), replica) == "order 'o-1': customer 'c-7' is deleted"


# --- Order: rules -------------------------------------------------------------------------------


def test_placing_an_order_whose_id_already_exists_is_rejected() -> None:
    assert order_rejection(OPEN_ORDER, place()) == "order 'o-1' already exists"


def test_placing_an_order_with_a_blank_order_id_is_rejected() -> None:
    assert order_rejection(None, place(order_id="")) == "order id '' is blank"


@pytest.mark.parametrize("quantity", [0, -3])
def test_placing_an_order_with_a_non_positive_quantity_is_rejected(quantity: int) -> None:
    reason = order_rejection(None, place(quantity=quantity))
    assert reason == f"order 'o-1' needs a positive integer quantity, got {quantity}"


@pytest.mark.parametrize("quantity", [True, 2.0, "2"], ids=repr)
def test_placing_an_order_with_a_quantity_that_is_not_an_int_is_rejected(quantity: Any) -> None:
    reason = order_rejection(None, place(quantity=quantity))
    assert reason == f"order 'o-1' needs a positive integer quantity, got {quantity!r}"


@pytest.mark.parametrize("price", ["0", "0.00", "-19.99"])
def test_placing_an_order_with_a_non_positive_unit_price_is_rejected(price: str) -> None:
    reason = order_rejection(None, place(unit_price=Decimal(price)))
    assert reason.startswith("order 'o-1' needs a positive Decimal unit price, got ")


@pytest.mark.parametrize(
    "price", [Decimal("NaN"), Decimal("Infinity"), 19.99, 5, "19.99"], ids=repr
)
def test_placing_an_order_with_a_price_that_is_not_a_finite_decimal_is_rejected(
    price: Any,
) -> None:
    reason = order_rejection(None, place(unit_price=price))
    assert reason == f"order 'o-1' needs a positive Decimal unit price, got {price!r}"


@pytest.mark.parametrize("product", ["", "   "])
def test_placing_an_order_with_an_empty_product_is_rejected(product: str) -> None:
    assert order_rejection(None, place(product=product)) == "order 'o-1' needs a product"


def test_placing_an_order_for_a_customer_the_replica_does_not_know_is_rejected() -> None:
    expected = "order 'o-1': customer 'c-7' is unknown to the Order service"
    assert order_rejection(None, place(), None) == expected
    someone_else = dataclasses.replace(ADA, customer_id="c-8")
    assert order_rejection(None, place(), someone_else) == expected


def test_placing_an_order_for_a_deleted_customer_is_rejected() -> None:
    assert order_rejection(None, place(), GONE) == "order 'o-1': customer 'c-7' is deleted"


def test_shipping_an_unknown_order_is_rejected() -> None:
    assert order_rejection(None, ShipOrder(order_id="o-1")) == "order 'o-1' does not exist"


def test_shipping_a_cancelled_order_is_rejected() -> None:
    cancelled = dataclasses.replace(OPEN_ORDER, status=CANCELLED)
    reason = order_rejection(cancelled, ShipOrder(order_id="o-1"))
    assert reason == "order 'o-1' is cancelled and cannot be shipped"


def test_shipping_an_already_shipped_order_is_rejected() -> None:
    shipped = dataclasses.replace(OPEN_ORDER, status=SHIPPED)
    assert order_rejection(shipped, ShipOrder(order_id="o-1")) == "order 'o-1' is already shipped"


def test_cancelling_an_unknown_order_is_rejected() -> None:
    command = CancelOrder(order_id="o-1", reason="x")
    assert order_rejection(None, command) == "order 'o-1' does not exist"


def test_cancelling_a_shipped_order_is_rejected() -> None:
    shipped = dataclasses.replace(OPEN_ORDER, status=SHIPPED)
    reason = order_rejection(shipped, CancelOrder(order_id="o-1", reason="customer deleted"))
    assert reason == "order 'o-1' is shipped and cannot be cancelled"


def test_cancelling_an_already_cancelled_order_is_rejected() -> None:
    cancelled = dataclasses.replace(OPEN_ORDER, status=CANCELLED)
    reason = order_rejection(cancelled, CancelOrder(order_id="o-1", reason="again"))
    assert reason == "order 'o-1' is already cancelled"


@pytest.mark.parametrize("reason", ["", "  "])
def test_cancelling_with_a_blank_reason_is_rejected(reason: str) -> None:
    rejection = order_rejection(OPEN_ORDER, CancelOrder(order_id="o-1", reason=reason))
    assert rejection == "order 'o-1' needs a non-blank reason to be cancelled"


# --- Streams, rejections, table of contents -----------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        RegisterCustomer(customer_id="c-7", name="Ada", address="1 Loop Road"),
        DeleteCustomer(customer_id="c-7"),
        CustomerRenamed(customer_id="c-7", name="Ada"),
        CustomerDeleted(customer_id="c-7"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_customer_messages_belong_to_the_customer_stream(message: Any) -> None:
    assert (stream_id_of(message), stream_type_of(message)) == ("customer-c-7", "Customer")
    assert stream_of(message) == ("customer-c-7", "Customer")


@pytest.mark.parametrize(
    "message",
    [place(), OrderPlaced(**command_to_payload(place()) | {"unit_price": Decimal(1)})],
    ids=lambda m: type(m).__name__,
)
def test_order_messages_belong_to_the_order_stream_though_they_name_a_customer(
    message: Any,
) -> None:
    assert (stream_id_of(message), stream_type_of(message)) == ("order-o-1", "Order")
    assert stream_of(message) == ("order-o-1", "Order")


def test_a_command_rejection_belongs_to_no_aggregate_stream() -> None:
    rejection = command_rejected(ShipOrder(order_id="o-1"), "order 'o-1' does not exist")
    with pytest.raises(InvalidEventError, match="CommandRejected belongs to no aggregate stream"):
        stream_id_of(rejection)  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match="CommandRejected belongs to no aggregate stream"):
        stream_of(rejection)  # type: ignore[arg-type]
    assert STREAM_TYPES == ("Customer", "Order")


def test_a_command_rejection_records_the_command_as_json_ready_fields() -> None:
    rejection = command_rejected(place(), "order 'o-1': customer 'c-7' is deleted")
    assert rejection == CommandRejected(
        command_type="PlaceOrder",
        command={
            "order_id": "o-1",
            "customer_id": "c-7",
            "product": "tea",
            "quantity": 2,
            "unit_price": "19.99",
        },
        reason="order 'o-1': customer 'c-7' is deleted",
    )
    assert command_from_payload(rejection.command_type, rejection.command) == place()


def test_the_tables_list_every_message_under_its_own_name_and_service() -> None:
    assert all(name == cls.__name__ for name, cls in {**COMMANDS, **EVENTS}.items())
    assert set(COMMANDS.values()) == {*CUSTOMER_COMMANDS, *ORDER_COMMANDS}
    assert set(EVENTS.values()) == {
        *CUSTOMER_EVENTS,
        *ORDER_EVENTS,
        CustomerReplicated,
        CommandRejected,
    }
    assert {cls: SERVICE_OF_COMMAND[cls] for cls in CUSTOMER_COMMANDS} == dict.fromkeys(
        CUSTOMER_COMMANDS, "customer"
    )
    assert {cls: SERVICE_OF_COMMAND[cls] for cls in ORDER_COMMANDS} == dict.fromkeys(
        ORDER_COMMANDS, "order"
    )


@pytest.mark.parametrize(
    "cls", [*COMMANDS.values(), *EVENTS.values(), Customer, Order], ids=lambda c: c.__name__
)
def test_every_message_and_state_is_a_frozen_keyword_only_slotted_dataclass(cls: type) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    instance = cls(**dict.fromkeys(names, "x"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, names[0], "y")
    with pytest.raises(TypeError):
        cls(*["x"] * len(names))
    assert not hasattr(instance, "__dict__")


# --- Payloads -----------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text()
FIELD_STRATEGIES: dict[object, st.SearchStrategy[Any]] = {
    str: st.text(),
    int: st.integers(),
    Decimal: st.decimals(allow_nan=False, allow_infinity=False),
    bool: st.booleans(),
    dict[str, Any]: st.dictionaries(st.text(), JSON_SCALARS),
}


def instances_of(cls: type) -> st.SearchStrategy[Any]:
    fields = {f.name: FIELD_STRATEGIES[f.type] for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


@given(st.one_of([instances_of(cls) for cls in EVENTS.values()]))
def test_every_event_type_round_trips_through_a_json_payload(event: Any) -> None:
    payload = event_to_payload(event)
    stored = json.loads(json.dumps(payload, sort_keys=True))
    back = event_from_payload(type(event).__name__, stored)
    assert back == event
    assert event_to_payload(back) == payload  # same spelling too: "1.50" stays "1.50"


@given(st.one_of([instances_of(cls) for cls in COMMANDS.values()]))
def test_every_command_type_round_trips_through_a_json_payload(command: Any) -> None:
    payload = command_to_payload(command)
    back = command_from_payload(type(command).__name__, json.loads(json.dumps(payload)))
    assert back == command
    assert command_to_payload(back) == payload


def test_an_event_payload_spells_decimals_as_strings_under_the_field_names() -> None:
    event = OrderPlaced(
        order_id="o-1", customer_id="c-7", product="tea", quantity=2, unit_price=Decimal("19.90")
    )
    assert event_to_payload(event) == {
        "order_id": "o-1",
        "customer_id": "c-7",
        "product": "tea",
        "quantity": 2,
        "unit_price": "19.90",
    }


def test_command_from_payload_converts_form_strings_to_field_types() -> None:
    raw = {
        "order_id": "o-1",
        "customer_id": "c-7",
        "product": "tea",
        "quantity": " 2 ",
        "unit_price": "19.99",
    }
    command = command_from_payload("PlaceOrder", raw)
    assert command == place()
    assert isinstance(command, PlaceOrder) and type(command.quantity) is int


def test_command_from_payload_keeps_a_float_price_at_its_shortest_spelling() -> None:
    raw = command_to_payload(place()) | {"unit_price": 19.99, "quantity": 2}
    assert command_from_payload("PlaceOrder", raw) == place(unit_price=Decimal("19.99"))


def test_command_from_payload_names_the_missing_fields() -> None:
    with pytest.raises(InvalidCommandError) as caught:
        command_from_payload("RegisterCustomer", {"customer_id": "c-7"})
    assert str(caught.value) == "RegisterCustomer: missing field(s) 'address', 'name'"


def test_command_from_payload_names_the_unknown_field() -> None:
    raw = {"customer_id": "c-7", "name": "Ada", "colour": "red"}
    with pytest.raises(InvalidCommandError) as caught:
        command_from_payload("RenameCustomer", raw)
    assert str(caught.value) == "RenameCustomer: unknown field(s) 'colour'"


@pytest.mark.parametrize("quantity", ["abc", "2.5", "", True, 2.0, None], ids=repr)
def test_command_from_payload_rejects_a_quantity_that_is_not_an_integer(quantity: Any) -> None:
    raw = command_to_payload(place()) | {"quantity": quantity}
    with pytest.raises(InvalidCommandError) as caught:
        command_from_payload("PlaceOrder", raw)
    expected = f"PlaceOrder: field 'quantity' must be an integer, got {quantity!r}"
    assert str(caught.value) == expected


@pytest.mark.parametrize(
    ("price", "problem"),
    [
        ("abc", "must be a decimal number"),
        (False, "must be a decimal number"),
        (None, "must be a decimal number"),
        ("NaN", "must be a finite decimal number"),
        ("Infinity", "must be a finite decimal number"),
    ],
    ids=repr,
)
def test_command_from_payload_rejects_a_price_that_is_not_a_finite_decimal(
    price: Any, problem: str
) -> None:
    raw = command_to_payload(place()) | {"unit_price": price}
    with pytest.raises(InvalidCommandError) as caught:
        command_from_payload("PlaceOrder", raw)
    assert str(caught.value) == f"PlaceOrder: field 'unit_price' {problem}, got {price!r}"


def test_command_from_payload_rejects_a_text_field_that_is_not_a_string() -> None:
    with pytest.raises(InvalidCommandError) as caught:
        command_from_payload("RenameCustomer", {"customer_id": "c-7", "name": 42})
    assert str(caught.value) == "RenameCustomer: field 'name' must be a string, got 42"


def test_command_from_payload_rejects_an_unknown_command_type() -> None:
    with pytest.raises(InvalidCommandError, match="unknown command type 'FlyOrder'; known: Reg"):
        command_from_payload("FlyOrder", {})


def test_command_from_payload_rejects_a_payload_that_is_not_a_mapping() -> None:
    with pytest.raises(InvalidCommandError, match="ShipOrder: payload must be a mapping"):
        command_from_payload("ShipOrder", ["o-1"])  # type: ignore[arg-type]


def test_invalid_input_errors_are_value_errors_in_the_error_family() -> None:
    assert issubclass(InvalidCommandError, CqrsLabError)
    assert issubclass(InvalidCommandError, ValueError)


def test_event_from_payload_rejects_an_unknown_event_type() -> None:
    with pytest.raises(InvalidEventError, match="unknown event type 'OrderLost'"):
        event_from_payload("OrderLost", {"order_id": "o-1"})


def test_event_from_payload_rejects_a_payload_that_does_not_fit_the_event() -> None:
    with pytest.raises(InvalidEventError, match="OrderShipped: missing field"):
        event_from_payload("OrderShipped", {})
    with pytest.raises(InvalidEventError, match="field 'command' must be a JSON object"):
        event_from_payload("CommandRejected", {"command_type": "X", "command": 1, "reason": "r"})


def test_the_order_services_replica_follows_the_customer_events_it_consumes() -> None:
    registered = replicate(None, CustomerRegistered(customer_id="c-1", name="Ada", address="A"), 1)
    replica = evolve_replica(registered)
    renamed = replicate(replica, CustomerRenamed(customer_id="c-1", name="Bea"), 5)
    deleted = replicate(evolve_replica(renamed), CustomerDeleted(customer_id="c-1"), 9)
    assert (renamed.name, renamed.source_position, renamed.deleted) == ("Bea", 5, False)
    assert evolve_replica(deleted) == Customer(
        customer_id="c-1", name="Bea", address="A", deleted=True
    )


@pytest.mark.parametrize(
    ("quantity", "unit_price"),
    [(1, Decimal("0.001")), (1, Decimal("19.999")), (1_000_001, Decimal("1")), (1, Decimal(10**6))],
)
def test_an_order_whose_amount_would_not_be_exact_in_cents_is_rejected(
    quantity: int, unit_price: Decimal
) -> None:
    customer = Customer(customer_id="c-1", name="Ada", address="A", deleted=False)
    command = PlaceOrder(
        order_id="o-1", customer_id="c-1", product="Pen", quantity=quantity, unit_price=unit_price
    )
    with pytest.raises(DomainRejection, match="whole cents"):
        decide_order(None, command, customer)


@given(st.one_of([instances_of(cls) for cls in EVENTS.values()]))
def test_an_event_read_back_from_the_log_equals_the_one_written(event: Any) -> None:
    payload = json.loads(json.dumps(event_to_payload(event)))
    assert event_from_log(type(event).__name__, payload) == event
