"""Publishing a segment: put-if-absent, through an unnamed temp file or else a named one."""

import contextlib
import os
import threading
from pathlib import Path

import pytest

from cqrs_lab import segments as fmt
from cqrs_lab.eventlog import NO_STREAM, EventLog, NewEvent

NAME = "000000000001-000000000001.parquet"


@pytest.fixture(params=["unnamed temp file", "named temp file"])
def folder(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if request.param == "named temp file":
        monkeypatch.setattr(fmt, "_unnamed_file", lambda folder: None)
    return tmp_path


def publish(folder: Path, data: bytes) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fmt.write_durably(fd, folder, NAME, data)
    finally:
        os.close(fd)


def test_publishing_writes_the_bytes_under_the_name_and_leaves_nothing_else(folder: Path) -> None:
    publish(folder, b"segment bytes")
    assert (folder / NAME).read_bytes() == b"segment bytes"
    assert os.listdir(folder) == [NAME]


def test_publishing_never_replaces_a_published_segment(folder: Path) -> None:
    publish(folder, b"first")
    with pytest.raises(FileExistsError):
        publish(folder, b"second")
    assert (folder / NAME).read_bytes() == b"first"
    assert os.listdir(folder) == [NAME]


def test_without_proc_the_segment_is_published_through_a_named_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link

    def link(src: str, dst: str, **kwargs: object) -> None:
        if str(src).startswith("/proc/"):
            raise FileNotFoundError(src)
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)
    publish(tmp_path, b"segment bytes")
    assert (tmp_path / NAME).read_bytes() == b"segment bytes"
    assert os.listdir(tmp_path) == [NAME]


# --- the next commit's file, opened ahead -------------------------------------------------------


def open_unnamed_files(folder: Path) -> list[str]:
    """This process's open files that are unnamed files (O_TMPFILE) in `folder`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(f"{folder}/#") and target.endswith("(deleted)"):
                found.append(target)
    return found


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int | None]]:
    """Every unnamed file opened, with the name of the thread that opened it."""
    calls: list[tuple[str, int | None]] = []
    real = fmt._unnamed_file

    def recording(folder: Path) -> int | None:
        fd = real(folder)
        calls.append((threading.current_thread().name, fd))
        return fd

    monkeypatch.setattr(fmt, "_unnamed_file", recording)
    return calls


def test_after_a_file_is_taken_the_next_one_is_opened_in_the_background(
    tmp_path: Path, opened: list[tuple[str, int | None]]
) -> None:
    files = fmt.UnnamedFiles(tmp_path)
    first, second = files.take(), files.take()
    threads = [name for name, _ in opened]
    assert threads[0] == "MainThread"
    assert threads[1].startswith("cqrs-lab-unnamed-file")  # second came from the background
    assert second == opened[1][1] and first != second
    for fd in (first, second):
        assert fd is not None
        assert os.fstat(fd).st_nlink == 0  # unnamed: nothing in the folder
        os.close(fd)
    assert os.listdir(tmp_path) == []
    files.close()
    assert open_unnamed_files(tmp_path) == []  # the third, opened ahead, is closed


def test_a_log_publishes_through_the_files_opened_ahead_and_leaves_none_open(
    tmp_path: Path, opened: list[tuple[str, int | None]]
) -> None:
    log = EventLog.create(tmp_path / "log")
    for k in range(3):
        log.append(
            [NewEvent(stream_id=f"s-{k}", stream_type="S", event_type="Happened", payload={})],
            expected={f"s-{k}": NO_STREAM},
        )
    assert sum(name.startswith("cqrs-lab-unnamed-file") for name, _ in opened) == 3
    assert open_unnamed_files(log.events_dir) != []  # the fourth commit's, ready
    log.close()
    assert open_unnamed_files(log.events_dir) == []
    assert sorted(os.listdir(log.events_dir)) == [fmt.segment_name(k, k) for k in (1, 2, 3)]
    assert EventLog.open(tmp_path / "log").verify().ok


def test_a_forked_child_never_takes_its_parents_file(
    tmp_path: Path, opened: list[tuple[str, int | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = fmt.UnnamedFiles(tmp_path)
    os.close(files.take() or -1)
    files._next.result()  # type: ignore[union-attr]  # the parent's next file is ready
    seen, parents = len(opened), opened[-1][1]
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as a forked child sees itself
    fd = files.take()
    assert fd is not None and fd != parents
    assert opened[seen] == ("MainThread", fd)  # opened by the child itself
    files.close()
    for mine in (fd, parents):
        os.close(mine or -1)


def test_if_opening_ahead_failed_the_commit_opens_its_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fmt._unnamed_file

    def failing_in_background(folder: Path) -> int | None:
        if threading.current_thread().name != "MainThread":
            raise OSError(24, "Too many open files")
        return real(folder)

    monkeypatch.setattr(fmt, "_unnamed_file", failing_in_background)
    files = fmt.UnnamedFiles(tmp_path)
    for _ in range(2):
        fd = files.take()
        assert fd is not None and os.fstat(fd).st_nlink == 0
        os.close(fd)
    files.close()
