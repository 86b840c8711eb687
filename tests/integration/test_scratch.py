"""Scratch folders (notebook labs, DuckDB spill folders) go when their process ends, even killed."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cqrs_lab.lab import Lab

CHILD = """
import sys, time
from cqrs_lab.lab import Lab
from cqrs_lab.scratch import scratch_folder
folders = [scratch_folder("test"), scratch_folder("test", in_memory=True)]
for folder in folders:
    (folder / "data.txt").write_text("x")
lab = Lab.create(folders[0] / "lab")  # its read store makes a DuckDB spill folder in TMPDIR
print(" ".join(map(str, folders)), flush=True)
if sys.argv[1] == "wait":
    time.sleep(600)
"""


def run_child(tmpdir: Path, how: str) -> tuple[subprocess.Popen[str], list[Path]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, how],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    assert child.stdout is not None
    folders = [Path(name) for name in child.stdout.readline().split()]
    assert len(folders) == 2 and all(folder.is_dir() for folder in folders)
    return child, folders


def wait_until_gone(paths: list[Path]) -> list[Path]:
    """The paths still there after up to 10 s."""
    for _ in range(200):
        left = [path for path in paths if path.exists()]
        if not left:
            return []
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("how", ["killed", "exits"])
def test_a_process_s_scratch_folders_are_removed_when_it_ends(tmp_path: Path, how: str) -> None:
    child, folders = run_child(tmp_path, "wait" if how == "killed" else "exit")
    assert str(folders[0]).startswith(str(tmp_path))
    spill = [path for path in tmp_path.iterdir() if path.name.startswith("cqrs-lab-duckdb-")]
    assert len(spill) == 1  # the lab's read store is open
    if how == "killed":
        child.send_signal(signal.SIGKILL)  # no atexit, no finalizers
    assert child.wait(timeout=30) in (0, -signal.SIGKILL)
    assert wait_until_gone([*folders, *spill]) == []
    assert list(tmp_path.iterdir()) == []


def test_a_read_store_removes_its_spill_folder_when_closed(tmp_path: Path) -> None:
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("cqrs-lab-duckdb-*"))
    lab = Lab.create(tmp_path / "lab")
    made = set(temp.glob("cqrs-lab-duckdb-*")) - before
    assert len(made) >= 1
    lab.close()
    assert not any(path.exists() for path in made)


def test_without_a_sweeper_a_folder_is_still_removed_at_a_normal_exit(tmp_path: Path) -> None:
    script = """
import subprocess, sys
from cqrs_lab import scratch
def broken(*args, **kwargs):
    raise OSError("no processes left")
subprocess.Popen = broken
print(scratch.scratch_folder("test"), flush=True)
"""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path / "cqrs-lab-test-"))
    assert list(tmp_path.iterdir()) == []
