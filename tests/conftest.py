"""Options shared by the whole test suite."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--trials",
        type=int,
        default=50,
        help="how many times the crash tests kill a writer or a compaction (default 50)",
    )


@pytest.fixture
def trials(request: pytest.FixtureRequest) -> int:
    """How many kills a crash test performs (`--trials`)."""
    count = int(request.config.getoption("--trials"))
    if count < 1:
        raise pytest.UsageError("--trials must be at least 1")
    return count
