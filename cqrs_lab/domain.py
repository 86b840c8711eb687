"""The two aggregates, Customer and Order: their commands, events, states and pure decisions.

Nothing here does I/O, reads a clock or makes ids. A service folds an aggregate's events with
`evolve_*`, asks `decide_*` what a command means and appends the events it gets back. A broken rule
raises `DomainRejection`; the service records it with `command_rejected(command, reason)`.

Choices the service layer relies on:
- The Order service's replica of a customer is a plain `Customer`, folded from the Customer events
  it consumed with `evolve_customer`: one shape and one fold, so the replica cannot drift.
- `decide_*` return `list[CustomerEvent]` / `list[OrderEvent]`, narrower than `list[Event]`, so that
  `reduce(evolve_customer, events, state)` type-checks.
- `CommandRejected` belongs to no aggregate stream: `stream_id_of` refuses it, the service chooses
  where in its log rejections go.
- A deleted customer stays in its stream with `deleted=True`; its id cannot be registered again.
- Decimals travel as `str(value)` ("19.99"), which round-trips exactly, trailing zeros included.
"""

# No `from __future__ import annotations`: `_parse_fields` reads the real field types.
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, assert_never

from cqrs_lab.errors import CqrsLabError, DomainRejection, InvalidEventError

OPEN, SHIPPED, CANCELLED = "open", "shipped", "cancelled"
CUSTOMER_STREAM, ORDER_STREAM = "Customer", "Order"
STREAM_TYPES = (CUSTOMER_STREAM, ORDER_STREAM)
CUSTOMER_SERVICE, ORDER_SERVICE = "customer", "order"
# Limits that keep every amount exact in the read models' DECIMAL(18, 2) columns.
CENT, MAX_QUANTITY, MAX_UNIT_PRICE = Decimal("0.01"), 1_000_000, Decimal(1_000_000)


class InvalidCommandError(CqrsLabError, ValueError):
    """Raw input (a form, the CLI) does not make a command: unknown type, missing or bad field."""


# --- Customer ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class RegisterCustomer:
    """Register a new customer under a fresh id."""

    customer_id: str
    name: str
    address: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RenameCustomer:
    """Give a customer a new name."""

    customer_id: str
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ChangeCustomerAddress:
    """Move a customer to a new address."""

    customer_id: str
    address: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DeleteCustomer:
    """Delete a customer (the Order service then cancels their open orders)."""

    customer_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CustomerRegistered:
    """A customer was registered."""

    customer_id: str
    name: str
    address: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CustomerRenamed:
    """A customer was renamed."""

    customer_id: str
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CustomerAddressChanged:
    """A customer's address changed."""

    customer_id: str
    address: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CustomerDeleted:
    """A customer was deleted."""

    customer_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Customer:
    """A customer's current state; also the Order service's replica of a customer."""

    customer_id: str
    name: str
    address: str
    deleted: bool


# --- Order ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaceOrder:
    """Place an order of `quantity` units of `product` for a customer."""

    order_id: str
    customer_id: str
    product: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, kw_only=True, slots=True)
class ShipOrder:
    """Ship an open order."""

    order_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelOrder:
    """Cancel an open order, saying why."""

    order_id: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderPlaced:
    """An order was placed."""

    order_id: str
    customer_id: str
    product: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderShipped:
    """An order was shipped."""

    order_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderCancelled:
    """An order was cancelled."""

    order_id: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Order:
    """An order's current state; `status` is OPEN, SHIPPED or CANCELLED."""

    order_id: str
    customer_id: str
    product: str
    quantity: int
    unit_price: Decimal
    status: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandRejected:
    """A command broke a rule; recorded in its service's log, outside any aggregate stream."""

    command_type: str
    command: dict[str, Any]
    reason: str


# --- The Order service's replica of customers ----------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class CustomerReplicated:
    """The Order service took in a Customer event; its replica of that customer now reads so."""

    customer_id: str
    name: str
    address: str
    deleted: bool
    source_position: int


# The unions a service accepts and records; `Event` is everything a log may hold.
CustomerCommand = RegisterCustomer | RenameCustomer | ChangeCustomerAddress | DeleteCustomer
CustomerEvent = CustomerRegistered | CustomerRenamed | CustomerAddressChanged | CustomerDeleted
OrderCommand = PlaceOrder | ShipOrder | CancelOrder
OrderEvent = OrderPlaced | OrderShipped | OrderCancelled
Command = CustomerCommand | OrderCommand
Event = CustomerEvent | OrderEvent | CustomerReplicated | CommandRejected

_State = TypeVar("_State", Customer, Order)


def replicate(
    replica: Customer | None, source: CustomerEvent, source_position: int
) -> CustomerReplicated:
    """The replica event the Order service records when it consumes a Customer event."""
    customer = evolve_customer(replica, source)
    assert customer is not None  # evolve_customer never returns None for a customer event
    return CustomerReplicated(
        customer_id=customer.customer_id,
        name=customer.name,
        address=customer.address,
        deleted=customer.deleted,
        source_position=source_position,
    )


def evolve_replica(event: CustomerReplicated) -> Customer:
    """The Order service's replica of a customer after a CustomerReplicated event."""
    return Customer(
        customer_id=event.customer_id, name=event.name, address=event.address, deleted=event.deleted
    )


# --- Decisions -----------------------------------------------------------------------------------


def decide_customer(state: Customer | None, command: CustomerCommand) -> list[CustomerEvent]:
    """The events a customer command causes; raises DomainRejection if it breaks a rule."""
    match command:
        case RegisterCustomer():
            return [_register(state, command)]
        case RenameCustomer():
            return [_rename(_live_customer(state, command.customer_id), command.name)]
        case ChangeCustomerAddress():
            return [_move(_live_customer(state, command.customer_id), command.address)]
        case DeleteCustomer():
            customer = _live_customer(state, command.customer_id)
            return [CustomerDeleted(customer_id=customer.customer_id)]
        case _:
            assert_never(command)


def _register(state: Customer | None, command: RegisterCustomer) -> CustomerRegistered:
    cid = command.customer_id
    _require_text(cid, f"customer id {cid!r} is blank")
    if state is not None:
        raise DomainRejection(f"customer {cid!r} is already registered")
    _require_text(command.name, f"customer {cid!r} needs a non-blank name")
    _require_text(command.address, f"customer {cid!r} needs a non-blank address")
    return CustomerRegistered(customer_id=cid, name=command.name, address=command.address)


def _live_customer(state: Customer | None, customer_id: str) -> Customer:
    if state is None:
        raise DomainRejection(f"customer {customer_id!r} is not registered")
    if state.deleted:
        raise DomainRejection(f"customer {customer_id!r} is deleted")
    return state


def _rename(customer: Customer, name: str) -> CustomerRenamed:
    cid = customer.customer_id
    _require_text(name, f"customer {cid!r} cannot be renamed to a blank name")
    if name == customer.name:
        raise DomainRejection(f"customer {cid!r} is already named {name!r}")
    return CustomerRenamed(customer_id=cid, name=name)


def _move(customer: Customer, address: str) -> CustomerAddressChanged:
    cid = customer.customer_id
    _require_text(address, f"customer {cid!r} cannot move to a blank address")
    if address == customer.address:
        raise DomainRejection(f"customer {cid!r} already lives at {address!r}")
    return CustomerAddressChanged(customer_id=cid, address=address)


def decide_order(
    state: Order | None, command: OrderCommand, customer: Customer | None
) -> list[OrderEvent]:
    """The events an order command causes; `customer` is the Order service's customer replica."""
    match command:
        case PlaceOrder():
            return [_place(state, command, customer)]
        case ShipOrder():
            return [_ship(_existing_order(state, command.order_id))]
        case CancelOrder():
            return [_cancel(_existing_order(state, command.order_id), command.reason)]
        case _:
            assert_never(command)


def _place(state: Order | None, command: PlaceOrder, customer: Customer | None) -> OrderPlaced:
    oid, cid = command.order_id, command.customer_id
    qty, price = command.quantity, command.unit_price
    _require_text(oid, f"order id {oid!r} is blank")
    if state is not None:
        raise DomainRejection(f"order {oid!r} already exists")
    _require_text(command.product, f"order {oid!r} needs a product")
    if type(qty) is not int or qty <= 0:  # `type`, not isinstance: True is an int, not a quantity
        raise DomainRejection(f"order {oid!r} needs a positive integer quantity, got {qty!r}")
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        raise DomainRejection(f"order {oid!r} needs a positive Decimal unit price, got {price!r}")
    if qty > MAX_QUANTITY or price >= MAX_UNIT_PRICE or price != price.quantize(CENT):
        raise DomainRejection(
            f"order {oid!r}: quantity must be at most {MAX_QUANTITY} and the unit price whole "
            f"cents below {MAX_UNIT_PRICE}, got {qty} x {price}"
        )
    if customer is None or customer.customer_id != cid:
        raise DomainRejection(f"order {oid!r}: customer {cid!r} is unknown to the Order service")
    if customer.deleted:
        raise DomainRejection(f"order {oid!r}: customer {cid!r} is deleted")
    product = command.product
    return OrderPlaced(
        order_id=oid, customer_id=cid, product=product, quantity=qty, unit_price=price
    )


def _existing_order(state: Order | None, order_id: str) -> Order:
    if state is None:
        raise DomainRejection(f"order {order_id!r} does not exist")
    return state


def _ship(order: Order) -> OrderShipped:
    oid = order.order_id
    if order.status == SHIPPED:
        raise DomainRejection(f"order {oid!r} is already shipped")
    if order.status == CANCELLED:
        raise DomainRejection(f"order {oid!r} is cancelled and cannot be shipped")
    return OrderShipped(order_id=oid)


def _cancel(order: Order, reason: str) -> OrderCancelled:
    oid = order.order_id
    if order.status == SHIPPED:
        raise DomainRejection(f"order {oid!r} is shipped and cannot be cancelled")
    if order.status == CANCELLED:
        raise DomainRejection(f"order {oid!r} is already cancelled")
    _require_text(reason, f"order {oid!r} needs a non-blank reason to be cancelled")
    return OrderCancelled(order_id=oid, reason=reason)


def _require_text(value: str, reason: str) -> None:
    if not value.strip():
        raise DomainRejection(reason)


def command_rejected(command: Command, reason: str) -> CommandRejected:
    """The failure event a service records when `command` is rejected for `reason`."""
    payload = command_to_payload(command)
    return CommandRejected(command_type=type(command).__name__, command=payload, reason=reason)


# --- Folds ---------------------------------------------------------------------------------------


def evolve_customer(state: Customer | None, event: CustomerEvent) -> Customer | None:
    """The customer after `event`; replay is `reduce(evolve_customer, events, None)`."""
    match event:
        case CustomerRegistered(customer_id=cid, name=name, address=address):
            return Customer(customer_id=cid, name=name, address=address, deleted=False)
        case CustomerRenamed(name=name):
            old = _folded(state, event)
            return Customer(
                customer_id=old.customer_id, name=name, address=old.address, deleted=old.deleted
            )
        case CustomerAddressChanged(address=address):
            old = _folded(state, event)
            return Customer(
                customer_id=old.customer_id, name=old.name, address=address, deleted=old.deleted
            )
        case CustomerDeleted():
            old = _folded(state, event)
            return Customer(
                customer_id=old.customer_id, name=old.name, address=old.address, deleted=True
            )
        case _:
            assert_never(event)


def evolve_order(state: Order | None, event: OrderEvent) -> Order | None:
    """The order after `event`; replay is `reduce(evolve_order, events, None)`."""
    match event:
        case OrderPlaced():
            return Order(
                order_id=event.order_id,
                customer_id=event.customer_id,
                product=event.product,
                quantity=event.quantity,
                unit_price=event.unit_price,
                status=OPEN,
            )
        case OrderShipped():
            return _with_status(_folded(state, event), SHIPPED)
        case OrderCancelled():
            return _with_status(_folded(state, event), CANCELLED)
        case _:
            assert_never(event)


# The folds build new states with the constructor, not `dataclasses.replace`, which costs several
# times more: a service folds every event of its log when it warms up (10^6 and more).
def _with_status(order: Order, status: str) -> Order:
    return Order(
        order_id=order.order_id,
        customer_id=order.customer_id,
        product=order.product,
        quantity=order.quantity,
        unit_price=order.unit_price,
        status=status,
    )


def _folded(state: _State | None, event: CustomerEvent | OrderEvent) -> _State:
    if state is None:  # only a damaged or misordered history gets here
        name, stream = type(event).__name__, stream_id_of(event)
        raise InvalidEventError(f"{name} for {stream!r} comes before the stream was created")
    return state


# --- Streams and payloads ------------------------------------------------------------------------


def stream_id_of(message: Command | CustomerEvent | OrderEvent) -> str:
    """The aggregate stream a message belongs to: "customer-<customer_id>" or "order-<order_id>"."""
    if isinstance(message, CUSTOMER_MESSAGES):
        return f"customer-{message.customer_id}"
    if isinstance(message, ORDER_MESSAGES):
        return f"order-{message.order_id}"
    raise InvalidEventError(f"{type(message).__name__} belongs to no aggregate stream")


def stream_type_of(message: Command | CustomerEvent | OrderEvent) -> str:
    """The stream type of the aggregate a message belongs to: "Customer" or "Order"."""
    if isinstance(message, CUSTOMER_MESSAGES):
        return CUSTOMER_STREAM
    if isinstance(message, ORDER_MESSAGES):
        return ORDER_STREAM
    raise InvalidEventError(f"{type(message).__name__} belongs to no aggregate stream")


def stream_of(message: Command | CustomerEvent | OrderEvent) -> tuple[str, str]:
    """`(stream_id_of(message), stream_type_of(message))`, found by the message's class: a
    service asks it once per command of a bulk load."""
    kind = _STREAM_OF_CLASS.get(type(message))
    if kind is None:  # not one of ours (a subclass, or no aggregate's): the full answer
        return stream_id_of(message), stream_type_of(message)
    prefix, stream_type, id_field = kind
    return f"{prefix}{getattr(message, id_field)}", stream_type


def event_to_payload(event: Event) -> dict[str, Any]:
    """The event's fields as a JSON-ready dict; Decimals become strings such as "19.99"."""
    cls = type(event)
    payload = {name: getattr(event, name) for name in _field_names(cls)}
    for name in _unready_fields(cls):  # only these can hold a Decimal or a dict to copy
        payload[name] = _json_ready(payload[name])
    return payload


def command_to_payload(command: Command) -> dict[str, Any]:
    """The command's fields as a JSON-ready dict; Decimals become strings such as "19.99"."""
    return {name: _json_ready(getattr(command, name)) for name in _field_names(type(command))}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_UNREADY_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names (cached: `fields()` is slow in bulk)."""
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return _FIELD_NAMES[cls]


def _unready_fields(cls: type) -> tuple[str, ...]:
    """The fields of an event class that are not JSON-ready as they are (cached)."""
    if cls not in _UNREADY_FIELDS:
        ready = (str, int, bool)
        _UNREADY_FIELDS[cls] = tuple(f.name for f in fields(cls) if f.type not in ready)
    return _UNREADY_FIELDS[cls]


def check_field_types(command: object) -> None:
    """Raise InvalidCommandError unless `command` is a known command with text in its text fields.

    Rules about numbers (a positive integer quantity, a Decimal price) are `decide`'s, recorded as
    rejections; this catches input no rule could even read, like a number where a name belongs.
    """
    if type(command) not in SERVICE_OF_COMMAND:
        shown = command.__name__ if isinstance(command, type) else type(command).__name__
        if isinstance(command, str | int | float):
            shown = repr(command)
        raise InvalidCommandError(
            f"{shown} is not a command the lab knows; send an instance, e.g. "
            "RegisterCustomer(customer_id='c-1', name='Ada', address='1 Loop Rd')"
        )
    for f in fields(command):  # type: ignore[arg-type]
        value = getattr(command, f.name)
        if f.type is str and not isinstance(value, str):
            raise InvalidCommandError(
                f"{type(command).__name__}: field {f.name!r} must be text, got {value!r}"
            )


def _json_ready(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    return dict(value) if isinstance(value, dict) else value


def event_from_payload(event_type: str, payload: Mapping[str, Any]) -> Event:
    """The event of type `event_type` that `event_to_payload` turned into `payload`."""
    if event_type not in EVENTS:
        raise InvalidEventError(f"unknown event type {event_type!r}; known: {', '.join(EVENTS)}")
    cls = EVENTS[event_type]
    return cls(**_parse_fields(cls, payload, InvalidEventError))


def event_from_log(event_type: str, data: dict[str, Any]) -> Event:
    """An event as the log recorded it (written by `event_to_payload`): rebuilt without the field
    checks raw input needs, so a service can fold a long history quickly."""
    cls = EVENTS.get(event_type)
    if cls is None:
        return event_from_payload(event_type, data)  # raises, naming the unknown type
    for name in _decimal_fields(cls):
        data[name] = Decimal(data[name])
    return cls(**data)


_DECIMAL_FIELDS: dict[type, tuple[str, ...]] = {}


def _decimal_fields(cls: type) -> tuple[str, ...]:
    if cls not in _DECIMAL_FIELDS:
        _DECIMAL_FIELDS[cls] = tuple(f.name for f in fields(cls) if f.type is Decimal)
    return _DECIMAL_FIELDS[cls]


def command_from_payload(command_type: str, payload: Mapping[str, Any]) -> Command:
    """Build a command from raw values (strings from a form or the CLI), converting each field."""
    if command_type not in COMMANDS:
        known = ", ".join(COMMANDS)
        raise InvalidCommandError(f"unknown command type {command_type!r}; known: {known}")
    cls = COMMANDS[command_type]
    return cls(**_parse_fields(cls, payload, InvalidCommandError))


def _parse_fields(
    cls: type[Command | Event], payload: Mapping[str, Any], error: type[CqrsLabError]
) -> dict[str, Any]:
    name, types = cls.__name__, {f.name: f.type for f in fields(cls)}
    if not isinstance(payload, Mapping):
        raise error(f"{name}: payload must be a mapping, got {payload!r}")
    if missing := sorted(types.keys() - payload.keys()):
        raise error(f"{name}: missing field(s) {', '.join(map(repr, missing))}")
    if unknown := sorted(payload.keys() - types.keys(), key=repr):
        raise error(f"{name}: unknown field(s) {', '.join(map(repr, unknown))}")
    values = {}
    for field, kind in types.items():
        try:
            values[field] = _PARSERS[kind](payload[field])
        except ValueError as problem:
            raise error(f"{name}: field {field!r} {problem}, got {payload[field]!r}") from None
    return values


def _parse_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _parse_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ValueError("must be an integer")


def _parse_decimal(value: object) -> Decimal:
    # str() first: a float from a widget then keeps its shortest spelling (19.99, not 19.989999...).
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("must be a decimal number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a decimal number") from None
    if not number.is_finite():
        raise ValueError("must be a finite decimal number")
    return number


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("must be true or false")


def _parse_mapping(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("must be a JSON object")
    return dict(value)


def parse_field(kind: object, value: object) -> object:
    """One raw value (text from a form) as a field of type `kind`; ValueError says what is wrong."""
    return _PARSERS[kind](value)


_PARSERS: dict[object, Callable[[object], object]] = {
    str: _parse_str,
    int: _parse_int,
    Decimal: _parse_decimal,
    bool: _parse_bool,
    dict[str, Any]: _parse_mapping,
}


# --- Table of contents ---------------------------------------------------------------------------

CUSTOMER_COMMANDS = (RegisterCustomer, RenameCustomer, ChangeCustomerAddress, DeleteCustomer)
ORDER_COMMANDS = (PlaceOrder, ShipOrder, CancelOrder)
CUSTOMER_EVENTS = (CustomerRegistered, CustomerRenamed, CustomerAddressChanged, CustomerDeleted)
ORDER_EVENTS = (OrderPlaced, OrderShipped, OrderCancelled)
CUSTOMER_MESSAGES = (*CUSTOMER_COMMANDS, *CUSTOMER_EVENTS)
ORDER_MESSAGES = (*ORDER_COMMANDS, *ORDER_EVENTS)

COMMANDS: dict[str, type[Command]] = {c.__name__: c for c in (*CUSTOMER_COMMANDS, *ORDER_COMMANDS)}
EVENTS: dict[str, type[Event]] = {
    e.__name__: e for e in (*CUSTOMER_EVENTS, *ORDER_EVENTS, CustomerReplicated, CommandRejected)
}
SERVICE_OF_COMMAND: dict[type[Command], str] = {
    **dict.fromkeys(CUSTOMER_COMMANDS, CUSTOMER_SERVICE),
    **dict.fromkeys(ORDER_COMMANDS, ORDER_SERVICE),
}
_STREAM_OF_CLASS: dict[type, tuple[str, str, str]] = {
    **dict.fromkeys(CUSTOMER_MESSAGES, ("customer-", CUSTOMER_STREAM, "customer_id")),
    **dict.fromkeys(ORDER_MESSAGES, ("order-", ORDER_STREAM, "order_id")),
}
