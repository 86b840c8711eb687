"""The event log against a model a learner could write on a napkin: a list of (stream, id, payload).

Hypothesis drives random sequences of appends, conflicting appends, duplicate ids, reads,
reopenings and compactions, and after every step the log must verify and read like the model.
"""

import json
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cqrs_lab.determinism import fixed_clock, seeded_ids
from cqrs_lab.errors import ConcurrencyError, DuplicateEventError
from cqrs_lab.eventlog import ANY_VERSION, EventLog, NewEvent, RecordedEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def canonical(payload: object) -> str:
    """A payload as the log stores it: JSON with sorted keys and no spaces."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


STREAMS = st.sampled_from(["customer-1", "customer-2", "order-1", "order-2", "order-3"])


class EventLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="cqrs-lab-model-"))
        self.log = EventLog.create(self.folder / "log", clock=fixed_clock(T0), ids=seeded_ids(0))
        self.model: list[tuple[str, str, str]] = []  # (stream_id, event_id, payload) by position
        self.serial = 0

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- the model ---------------------------------------------------------------------------

    def version(self, stream_id: str) -> int:
        return sum(1 for stream, _, _ in self.model if stream == stream_id)

    def expected_rows(self, *, stream_id: str | None = None, after: int = 0) -> list[tuple]:
        rows, versions = [], {}
        for position, (stream, event_id, payload) in enumerate(self.model, start=1):
            versions[stream] = versions.get(stream, 0) + 1
            if (stream_id is None or stream == stream_id) and position > after:
                rows.append((position, stream, versions[stream], event_id, payload))
        return rows

    def fresh_id(self) -> str:
        self.serial += 1
        return f"event-{self.serial}"

    @staticmethod
    def rows(events: list[RecordedEvent]) -> list[tuple]:
        return [(e.position, e.stream_id, e.version, e.event_id, e.payload) for e in events]

    # --- rules -------------------------------------------------------------------------------

    @rule(
        batch=st.lists(st.tuples(STREAMS, st.integers(0, 99)), min_size=1, max_size=4),
        any_version=st.booleans(),
    )
    def append(self, batch: list[tuple[str, int]], any_version: bool) -> None:
        events = [
            NewEvent(
                stream_id=stream,
                stream_type=stream.split("-")[0].title(),
                event_type="Happened",
                payload={"n": n, "text": "é\n"},
                event_id=self.fresh_id(),
            )
            for stream, n in batch
        ]
        expected = {s: ANY_VERSION if any_version else self.version(s) for s, _ in batch}
        commit = self.log.append(events, expected=expected)
        start = len(self.model)
        self.model += [(e.stream_id, str(e.event_id), canonical(e.payload)) for e in events]
        assert self.rows(list(commit)) == self.expected_rows(after=start)

    @precondition(lambda self: self.model)
    @rule(stream=STREAMS, offset=st.sampled_from([-2, -1, 1, 2]))
    def stale_append(self, stream: str, offset: int) -> None:
        actual = self.version(stream)
        wrong = actual + offset if actual + offset >= 0 else actual + 1
        event = NewEvent(stream_id=stream, stream_type="X", event_type="Stale", payload={})
        position = self.log.position
        try:
            self.log.append([event], expected={stream: wrong})
        except ConcurrencyError as error:
            assert (error.stream_id, error.expected, error.actual) == (stream, wrong, actual)
        else:
            raise AssertionError(f"appending at version {wrong} over {actual} was accepted")
        assert self.log.position == position

    @precondition(lambda self: self.model)
    @rule(data=st.data(), stream=STREAMS)
    def duplicate_event_id(self, data: st.DataObject, stream: str) -> None:
        taken = data.draw(st.sampled_from([event_id for _, event_id, _ in self.model]))
        events = [
            NewEvent(stream_id=stream, stream_type="X", event_type="Again", payload={}),
            NewEvent(
                stream_id=stream, stream_type="X", event_type="Again", payload={}, event_id=taken
            ),
        ]
        try:
            self.log.append(events, expected={stream: ANY_VERSION})
        except DuplicateEventError as error:
            assert error.event_id == taken
        else:
            raise AssertionError(f"event id {taken!r} was accepted twice")

    @rule(stream=STREAMS)
    def duplicate_within_a_batch(self, stream: str) -> None:
        twice = self.fresh_id()
        events = [
            NewEvent(stream_id=stream, stream_type="X", event_type="Twice", payload={}, event_id=i)
            for i in (twice, twice)
        ]
        try:
            self.log.append(events, expected={stream: ANY_VERSION})
        except DuplicateEventError as error:
            assert error.event_id == twice
        else:
            raise AssertionError(f"event id {twice!r} was accepted twice in one batch")

    @rule()
    def read_all(self) -> None:
        assert self.rows(self.log.read()) == self.expected_rows()

    @rule(stream=STREAMS)
    def read_one_stream(self, stream: str) -> None:
        assert self.rows(self.log.read(stream_id=stream)) == self.expected_rows(stream_id=stream)
        assert self.log.stream_version(stream) == self.version(stream)

    @rule(data=st.data())
    def read_after(self, data: st.DataObject) -> None:
        after = data.draw(st.integers(0, len(self.model) + 1))
        assert self.rows(self.log.read(after=after)) == self.expected_rows(after=after)

    @rule(seed=st.integers(0, 3))
    def reopen(self, seed: int) -> None:
        self.log.close()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an intact log opens without complaint
            # A clock that starts over at T0: recorded_at must still never go back.
            self.log = EventLog.open(
                self.folder / "log", clock=fixed_clock(T0), ids=seeded_ids(seed)
            )

    @rule(target_rows=st.integers(2, 8))
    def compact(self, target_rows: int) -> None:
        before = self.log.scan()
        report = self.log.compact(target_rows=target_rows, keep_replaced_for=0)
        assert self.log.scan().equals(before)
        assert report.segments_after == len(self.log.files())

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def verifies(self) -> None:
        report = self.log.verify()
        assert report.ok, str(report)
        assert report.notices == []
        assert report.events == len(self.model) == self.log.position

    @invariant()
    def recorded_at_never_decreases(self) -> None:
        times = self.log.scan(columns=["recorded_at"])["recorded_at"].to_pylist()
        assert times == sorted(times)
        assert all(t >= T0 for t in times)


EventLogMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
TestTheEventLogBehavesLikeAListOfEvents = EventLogMachine.TestCase
