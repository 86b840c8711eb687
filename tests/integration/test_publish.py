"""Publishing a segment: put-if-absent, through an unnamed temp file or else a named one."""

import os
from pathlib import Path

import pytest

from cqrs_lab import segments as fmt

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
