"""An exclusive, inter-process lock on a file: one writer at a time per store.

`flock` locks belong to an open file description, so two `FileLock`s on one file conflict even
inside one process, and the kernel releases the lock when its holder dies (SIGKILL included):
a killed writer never leaves a store locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from cqrs_lab.errors import StoreLockedError


class FileLock:
    """Exclusive lock on `path`; waits up to `timeout` seconds, then raises StoreLockedError."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path, self.timeout = path, timeout
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._nonce = os.urandom(4).hex()  # tells this lock from others of the same process
        # Whether, since this lock last held it, another holder took it (another process, or
        # another FileLock on the file): a writer then checks what that holder may have left.
        self.others_held = True

    def acquire(self) -> None:
        """Take the lock, polling with a short, growing sleep while another holder has it."""
        deadline, pause = time.monotonic() + self.timeout, 0.0001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLockedError(self._held_message()) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
            else:
                # The holder's mark: its pid (for the message above), then this lock's nonce.
                mark = f"{os.getpid():<10} {self._nonce}\n".encode()
                self.others_held = os.pread(self._fd, len(mark) + 1, 0) != mark
                if self.others_held:
                    os.pwrite(self._fd, mark, 0)
                    os.ftruncate(self._fd, len(mark))
                return

    def release(self) -> None:
        """Give the lock up."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (releasing the lock if held)."""
        os.close(self._fd)

    def _held_message(self) -> str:
        mark = os.pread(self._fd, 64, 0).decode(errors="replace").split()
        holder = mark[0] if mark else "unknown"
        return (
            f"{self.path} is locked by another process (pid {holder}) for more than "
            f"{self.timeout:g} s; wait for it to finish or stop it, then try again"
        )

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
