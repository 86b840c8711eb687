"""Servers the browser tests start and stop themselves: JupyterLab and Voilà, on 127.0.0.1 only.

Each server gets a random free port, a random token, its own temporary Jupyter folders and a
temporary copy of the notebooks; `stop()` ends it and every process it started (kernels too).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
# Chromium flags that work on this closed network: no background connections, no sandbox (root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# JupyterLab user settings: no news, no update checks, no toasts; every cell in the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}


@dataclass
class Server:
    """A running server: its base URL (ending in /), login token, log file and process."""

    name: str
    url: str
    token: str
    log: Path
    process: subprocess.Popen[bytes]

    def address(self, path: str = "", query: str = "") -> str:
        """`path` under the server, with the token that logs the browser in."""
        return f"{self.url}{path}?{query}{'&' if query else ''}token={self.token}"

    def log_text(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(errors="replace")

    def shut_down_kernels(self) -> None:
        """Ask the server to shut down every kernel it runs (what closing a notebook does)."""
        for kernel in json.loads(self._call("GET", "api/kernels")):
            self._call("DELETE", f"api/kernels/{kernel['id']}")

    def _call(self, method: str, path: str) -> bytes:
        port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(method, f"/{path}", headers={"Authorization": f"token {self.token}"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {body[:200]!r}")
        return body

    def stop(self) -> list[int]:
        """Stop the server and every process under it (kernels included); returns any survivors."""
        family = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # Jupyter shuts its kernels down on TERM
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for process in family:  # anything the graceful stop left behind
            process.kill()
        time.sleep(0.2)
        return [process.pid for process in family if process.alive()]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Process:
    """A process id with its start time, so a reused id is never mistaken for it."""

    pid: int
    started: str

    def alive(self) -> bool:
        """True while this very process (not a later one with its id) still exists."""
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.started and stat[2] != "Z"

    def kill(self) -> None:
        """SIGKILL, if it is still this process."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def descendants(pid: int) -> list[Process]:
    """All processes below `pid` (children, grandchildren, ...), read from /proc."""
    table: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    found: list[Process] = []
    frontier = {pid}
    while frontier:
        children = {child for child, (parent, _, _) in table.items() if parent in frontier}
        found += [Process(child, table[child][1]) for child in sorted(children)]
        frontier = children
    return found


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent id, start time, state) of a process, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19], fields[0]


def jupyter_env(home: Path) -> dict[str, str]:
    """The environment for a server: its own runtime, config and data folders under `home`."""
    env = dict(os.environ)
    for variable, folder in [
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("IPYTHONDIR", "ipython"),
    ]:
        (home / folder).mkdir(parents=True, exist_ok=True)
        env[variable] = str(home / folder)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # kernels use this venv's python
    env.pop("JUPYTER_PATH", None)
    return env


def copy_notebooks(source: Path, target: Path) -> Path:
    """A temporary copy of a notebook folder: the tests never touch the repository's notebooks."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return target


def start_lab(home: Path, notebooks: Path) -> Server:
    """JupyterLab on a copy of `notebooks`, with settings that keep pop-ups away."""
    settings = home / "user-settings"
    for plugin, values in LAB_SETTINGS.items():
        file = settings / f"{plugin}.jupyterlab-settings"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(24)
    argv = [
        str(BIN / "jupyter-lab"),
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={copy_notebooks(notebooks, home / 'notebooks')}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    return _start("jupyterlab", argv, home, port, token, ready="/api")


def start_voila(home: Path, notebook: Path) -> Server:
    """Voilà serving a copy of one notebook as a standalone page."""
    copy = home / "dashboard" / notebook.name
    copy.parent.mkdir(parents=True)
    shutil.copy(notebook, copy)
    port, token = free_port(), secrets.token_hex(24)
    argv = [
        str(BIN / "voila"),
        str(copy),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={port}",
        "--Voila.port_retries=0",
        f"--token={token}",
        f"--Voila.connection_dir_root={home / 'runtime'}",
    ]
    # Voilà's API wants the token; a redirect to its login page says the server is up.
    return _start("voila", argv, home, port, token, ready="/api")


def _start(name: str, argv: list[str], home: Path, port: int, token: str, *, ready: str) -> Server:
    log = home / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=home,
            env=jupyter_env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, f"http://127.0.0.1:{port}/", token, log, process)
    try:
        _wait_until_answering(server, port, ready)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_answering(server: Server, port: int, path: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{server.log_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            status = connection.getresponse().status
            connection.close()
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{server.name} did not answer {path} in {timeout} s:\n{server.log_text()}")
