"""Publishing a segment: put-if-absent, through an unnamed temp file or else a named one."""

import contextlib
import os
import threading
from pathlib import Path
from typing import NamedTuple

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


class Opened(NamedTuple):
    thread: str
    fd: int
    inode: int


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Opened]:
    """Every unnamed file opened: by which thread, its descriptor and its inode."""
    calls: list[Opened] = []
    real = fmt._unnamed_file

    def recording(folder: Path) -> int | None:
        fd = real(folder)
        assert fd is not None
        calls.append(Opened(threading.current_thread().name, fd, os.fstat(fd).st_ino))
        return fd

    monkeypatch.setattr(fmt, "_unnamed_file", recording)
    return calls


def opener_of(inode: int, opened: list[Opened]) -> str:
    return next(o.thread for o in opened if o.inode == inode)


def test_after_a_file_is_taken_the_next_ones_are_opened_in_the_background(
    tmp_path: Path, opened: list[Opened]
) -> None:
    files = fmt.UnnamedFiles(tmp_path)
    taken = [files.take() for _ in range(4)]
    inodes = []
    for fd in taken:
        assert fd is not None
        assert os.fstat(fd).st_nlink == 0  # unnamed: nothing in the folder
        inodes.append(os.fstat(fd).st_ino)
        os.close(fd)
    assert len(set(inodes)) == 4
    assert opener_of(inodes[0], opened) == "MainThread"
    for inode in inodes[1:]:
        assert opener_of(inode, opened).startswith("cqrs-lab-unnamed-file")
    assert os.listdir(tmp_path) == []
    for _ in range(500):  # the last take's files may still be being opened
        if len(open_unnamed_files(tmp_path)) == fmt.OPEN_AHEAD:
            break
        threading.Event().wait(0.01)
    assert len(open_unnamed_files(tmp_path)) == fmt.OPEN_AHEAD
    files.close()
    assert open_unnamed_files(tmp_path) == []  # the ones opened ahead are closed


def test_a_log_publishes_through_the_files_opened_ahead_and_leaves_none_open(
    tmp_path: Path, opened: list[Opened]
) -> None:
    log = EventLog.create(tmp_path / "log")
    for k in range(4):
        log.append(
            [NewEvent(stream_id=f"s-{k}", stream_type="S", event_type="Happened", payload={})],
            expected={f"s-{k}": NO_STREAM},
        )
    names = [fmt.segment_name(k, k) for k in (1, 2, 3, 4)]
    openers = [opener_of((log.events_dir / name).stat().st_ino, opened) for name in names]
    assert openers[0] == "MainThread"
    assert all(name.startswith("cqrs-lab-unnamed-file") for name in openers[1:])
    assert open_unnamed_files(log.events_dir) != []  # the next commits', ready
    log.close()
    assert open_unnamed_files(log.events_dir) == []
    assert sorted(os.listdir(log.events_dir)) == names
    assert EventLog.open(tmp_path / "log").verify().ok


def test_a_forked_child_never_takes_its_parents_files(
    tmp_path: Path, opened: list[Opened], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = fmt.UnnamedFiles(tmp_path)
    os.close(files.take() or -1)
    while len(opened) < 1 + fmt.OPEN_AHEAD:  # the parent's next files are being opened
        threading.Event().wait(0.01)
    seen, parents = len(opened), {o.fd for o in opened[1:]}
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as a forked child sees itself
    fd = files.take()
    assert fd is not None and fd not in parents
    assert opened[seen] == Opened("MainThread", fd, os.fstat(fd).st_ino)  # the child's own
    files.close()
    for mine in (fd, *parents):
        os.close(mine)


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
