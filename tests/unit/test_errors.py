"""Error messages name what went wrong: the stream, the versions, the event id."""

import pytest

from cqrs_lab.errors import (
    ConcurrencyError,
    CorruptLogError,
    CqrsLabError,
    DomainRejection,
    DuplicateEventError,
    InvalidEventError,
    LogNotFoundError,
    StoreLockedError,
)


def test_a_concurrency_error_names_the_stream_and_both_versions() -> None:
    error = ConcurrencyError("customer-7", 3, 5)
    assert (error.stream_id, error.expected, error.actual) == ("customer-7", 3, 5)
    assert str(error) == "stream 'customer-7' was expected at version 3, but it is at version 5"


def test_a_concurrency_error_on_a_stream_expected_not_to_exist_says_so() -> None:
    assert str(ConcurrencyError("order-1", 0, 2)) == (
        "stream 'order-1' was expected to not exist yet, but it is at version 2"
    )


def test_a_concurrency_error_on_a_missing_stream_says_it_does_not_exist() -> None:
    assert str(ConcurrencyError("order-1", 4, 0)) == (
        "stream 'order-1' was expected at version 4, but it does not exist"
    )


def test_a_duplicate_event_error_names_the_event_id() -> None:
    error = DuplicateEventError("e-42")
    assert error.event_id == "e-42"
    assert "'e-42'" in str(error)


def test_a_domain_rejection_carries_its_reason_as_its_message() -> None:
    error = DomainRejection("a shipped order cannot be cancelled")
    assert error.reason == str(error) == "a shipped order cannot be cancelled"


@pytest.mark.parametrize(
    "error",
    [
        ConcurrencyError("s", 1, 2),
        DuplicateEventError("e"),
        InvalidEventError("bad"),
        StoreLockedError("locked"),
        CorruptLogError("corrupt"),
        LogNotFoundError("missing"),
        DomainRejection("no"),
    ],
)
def test_every_error_is_a_cqrs_lab_error(error: Exception) -> None:
    assert isinstance(error, CqrsLabError)


def test_errors_also_fit_the_builtin_families_callers_already_catch() -> None:
    assert issubclass(InvalidEventError, ValueError)
    assert issubclass(LogNotFoundError, FileNotFoundError)
