"""The faults notebook 06 causes (cqrs_lab/faults.py): a flipped byte, a killed writer, a race.

The writer and racer are real child processes; each test also checks none is left running.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cqrs_lab.errors import CorruptLogError
from cqrs_lab.eventlog import NO_STREAM, EventLog, NewEvent
from cqrs_lab.faults import FaultError, flip_byte, kill_writer_mid_commit, race_writers


def event(stream_id: str, name: str = "Opened") -> NewEvent:
    return NewEvent(stream_id=stream_id, stream_type="Account", event_type=name, payload={"n": 1})


def fault_children() -> list[int]:
    """Our children still running `python -m cqrs_lab.faults` (zombies count too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"cqrs_lab.faults" in command:
            found.append(int(entry.name))
    return found


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "log"
    with EventLog.create(path) as log:
        log.append([event("account-1")], expected={"account-1": NO_STREAM})
        log.append([event("account-2")], expected={"account-2": NO_STREAM})
    return path


def test_a_flipped_byte_is_named_by_verify_and_refused_by_reads(log_path: Path) -> None:
    with EventLog.open(log_path) as log:
        segment = log.files()[0]
        flipped = flip_byte(segment, segment.read_bytes().find(b'"n":1'))  # in a data page
        report = log.verify()
        with pytest.raises(CorruptLogError, match=segment.name):
            log.read()

    assert flipped.file == segment.name
    assert flipped.after == flipped.before ^ 0xFF
    assert not report.ok
    assert {Path(finding.file).name for finding in report.findings} == {segment.name}


def test_flipping_the_same_byte_twice_restores_the_file(log_path: Path) -> None:
    with EventLog.open(log_path) as log:
        segment = log.files()[-1]
        flip_byte(segment, -1)
        assert not log.verify().ok
        flip_byte(segment, -1)
        assert log.verify().ok


def test_flip_byte_refuses_an_offset_past_the_end(log_path: Path) -> None:
    segment = next((log_path / "events").glob("*.parquet"))
    with pytest.raises(ValueError, match="there is no byte"):
        flip_byte(segment, segment.stat().st_size)


def test_a_killed_writer_loses_no_acknowledged_commit_and_leaves_no_half_commit(
    log_path: Path,
) -> None:
    report = kill_writer_mid_commit(log_path, after_acks=3)

    assert report.exit_code == -signal.SIGKILL
    assert len(report.acknowledged) >= 3 * 2  # two events per acknowledged commit
    assert report.all_acknowledged_present
    assert report.torn_commits == []
    assert report.verify_ok
    assert "acknowledged commits present: True" in str(report)
    with EventLog.open(log_path) as log:
        assert log.verify().ok
        assert (log.position - 2) % 2 == 0, "an odd number of probe events: half a commit"
        log.append([event("after")], expected={"after": NO_STREAM})  # the log goes on
    assert fault_children() == []


@pytest.mark.slow  # three Python processes start at once: ~6 s on two cores
def test_racing_writers_have_exactly_one_winner_and_the_rest_conflict(log_path: Path) -> None:
    report = race_writers(log_path, "account-1", writers=3)

    assert report.expected == 1
    assert report.winners == [2]
    assert (
        report.conflicts
        == ["stream 'account-1' was expected at version 1, but it is at version 2"] * 2
    )
    assert "winners: 1, conflicts: 2" in str(report)
    with EventLog.open(log_path) as log:
        versions = [e.version for e in log.read(stream_id="account-1")]
        assert versions == [1, 2]
        assert log.verify().ok
    assert fault_children() == []


def test_a_child_that_fails_is_reported_and_reaped(tmp_path: Path) -> None:
    with pytest.raises(FaultError, match="expected 'ack '"):
        kill_writer_mid_commit(tmp_path / "no-log-here", after_acks=1)
    assert fault_children() == []
