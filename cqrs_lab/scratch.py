"""Scratch folders that are removed when this process ends, however it ends.

`atexit` and `tempfile`'s finalizers run only when Python exits normally. A Jupyter kernel is
often not given that chance: a test runner or a restart kills it, and every notebook run then left
its lab behind (71 folders in /tmp and seven 13 MB labs in /dev/shm after one day of test runs
here; /dev/shm is memory). So the first scratch folder starts a small sweeper process in its own
session. This process tells it each folder's path over a pipe; when the pipe closes, which the
kernel does for any process that ends, even by SIGKILL, the sweeper removes them all and exits.

    >>> folder = scratch_folder("01")           # /tmp/cqrs-lab-01-xxxxxxxx, gone when we are
    >>> remove_when_process_ends(some_path)     # any other folder this process owns
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Reads one folder per line until the pipe closes, then removes them.
_SWEEP = """
import shutil, sys
for line in sys.stdin.read().splitlines():
    shutil.rmtree(line, ignore_errors=True)
"""


class _Sweeper:
    """The sweeper process of this process (a forked child starts its own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SWEEP],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # not killed with the kernel's process group
            cwd=Path(tempfile.gettempdir()),  # keeps no folder of ours in use
        )

    def add(self, folder: Path) -> None:
        pipe = self.process.stdin
        assert pipe is not None  # stdin=PIPE
        pipe.write(f"{folder}\n")
        pipe.flush()


_SWEEPER: list[_Sweeper] = []


def remove_when_process_ends(folder: Path) -> None:
    """Remove `folder` (and all in it) once this process has ended, normally or not."""
    try:
        if not _SWEEPER or _SWEEPER[0].pid != os.getpid():
            _SWEEPER[:] = [_Sweeper()]
        _SWEEPER[0].add(folder)
    except (OSError, ValueError):  # no sweeper (it could not start, or died): a normal exit then
        _SWEEPER.clear()  # the next folder tries a new one
        atexit.register(shutil.rmtree, folder, ignore_errors=True)


def scratch_folder(name: str, *, in_memory: bool = False) -> Path:
    """A new temp folder `cqrs-lab-<name>-...`, removed when this process ends; `in_memory`
    puts it in /dev/shm if there is one (for throwaway histories, where fsync buys nothing)."""
    shm = Path("/dev/shm")
    where = shm if in_memory and shm.is_dir() and os.access(shm, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix=f"cqrs-lab-{name}-", dir=where))
    remove_when_process_ends(folder)
    return folder
