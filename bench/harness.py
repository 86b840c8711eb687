"""What every benchmark shares: figures, the run context, timing helpers, machine facts, the table.

A benchmark module exposes ``PARTS``, a dict from part name to a function ``part(ctx) -> None``
that measures and calls ``ctx.report(figure)`` for each figure. Ratios are always expressed as
"how many times better cqrs_lab is than the peer": above 1 cqrs_lab wins, below 1 it loses, for
latencies (lower is better) and throughputs (higher is better) alike.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np


@dataclass
class Figure:
    """One measured number, its target and the same number measured for peers in this run."""

    key: str
    label: str
    value: float
    unit: str  # "ms", "s", "events/s", "rows/s"
    target: float | None = None
    higher_is_better: bool = True
    peers: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target

    def ratio(self, peer: str) -> float | None:
        """How many times better cqrs_lab is than `peer` (> 1: cqrs_lab is better)."""
        other = self.peers.get(peer)
        if other is None or other == 0 or self.value == 0:
            return None
        return self.value / other if self.higher_is_better else other / self.value


@dataclass
class Context:
    """The run's settings and results; benchmark parts report figures through it."""

    scale: str
    out: Path
    keep: bool = False
    profile: bool = False
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        print(text, flush=True)

    def info(self, text: str) -> None:
        """A fact worth keeping with the results (printed now and saved in results.json)."""
        self.notes.append(text)
        self.say(f"    · {text}")

    def report(self, figure: Figure) -> None:
        self.figures.append(figure)
        self.say(f"  {describe(figure)}")

    def folder(self, name: str) -> Path:
        """A fresh working folder under the output folder."""
        path = self.out / "data" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def discard(self, path: Path) -> None:
        """Delete a working folder (large logs) unless --keep was given."""
        if not self.keep:
            shutil.rmtree(path, ignore_errors=True)

    @contextmanager
    def profiled(self, name: str) -> Iterator[None]:
        """Profile the block with cProfile when --profile is on (timings then include overhead)."""
        if not self.profile:
            yield
            return
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()
            path = self.out / "profiles" / f"{name}.prof"
            path.parent.mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(path)
            self.say(f"    profile of {name} -> {path} (top by own time):")
            stats = pstats.Stats(str(path), stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(12)


# --- timing ---------------------------------------------------------------------------------------


def percentiles(seconds: list[float], points: tuple[int, ...] = (50, 90, 99)) -> dict[int, float]:
    """Percentiles of durations, in milliseconds."""
    values = np.percentile(np.array(seconds) * 1e3, points)
    return dict(zip(points, values.tolist(), strict=True))


def report_latencies(
    ctx: Context, key: str, label: str, samples: dict[str, list[float]], target_ms: float
) -> None:
    """p50/p90/p99 of cqrs_lab's durations beside every peer's in `samples`; p50 has the target."""
    stats = {name: percentiles(seconds) for name, seconds in samples.items()}
    for point in (50, 90, 99):
        ctx.report(
            Figure(
                key=f"{key}.p{point}",
                label=f"{label}, p{point}",
                value=stats["cqrs_lab"][point],
                unit="ms",
                target=target_ms if point == 50 else None,
                higher_is_better=False,
                peers={name: stats[name][point] for name in samples if name != "cqrs_lab"},
            )
        )


class Stopwatch:
    """`with Stopwatch() as sw: ...` then `sw.seconds`.

    Collects garbage first, so a timing does not pay for a collection of earlier allocations.
    """

    def __enter__(self) -> Stopwatch:
        gc.collect()
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


# --- machine facts --------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts(out: Path) -> dict[str, str]:
    facts = {
        "cores": str(os.cpu_count()),
        "cpu": cpu_model(),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "filesystem": filesystem_of(out),
        "python": platform.python_version(),
    }
    for package in ("cqrs_lab", "duckdb", "pyarrow", "numpy", "eventsourcing"):
        facts[package] = version(package)
    facts["cqrs_lab commit"] = git_commit()
    facts["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return facts


def git_commit() -> str:
    """The checkout's commit, and whether cqrs_lab/ has uncommitted changes (they are measured)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "cqrs_lab"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (+ uncommitted changes in cqrs_lab/)" if dirty else head


def filesystem_of(path: Path) -> str:
    """The mount's device and type for `path` (fsync costs depend on it)."""
    best, answer = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, answer = mount, f"{kind} on {device} ({mount})"
    except OSError:
        pass
    return answer


# --- printing -------------------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit.endswith("/s"):
        if value >= 1e6:
            return f"{value / 1e6:.2f} M {unit}"
        return f"{value / 1e3:.1f} k {unit}"
    return f"{value:g} {unit}"


def format_target(figure: Figure) -> str:
    if figure.target is None:
        return "-"
    sign = ">=" if figure.higher_is_better else "<="
    return f"{sign} {format_value(figure.target, figure.unit)}"


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" if 0.1 <= ratio < 100 else f"{ratio:.2g}x"


def describe(figure: Figure) -> str:
    parts = [f"{figure.label}: {format_value(figure.value, figure.unit)}"]
    if figure.target is not None:
        verdict = "PASS" if figure.passed else "FAIL"
        parts.append(f"[target {format_target(figure)}: {verdict}]")
    for peer, value in figure.peers.items():
        parts.append(
            f"| {peer} {format_value(value, figure.unit)} ({format_ratio(figure.ratio(peer))})"
        )
    if figure.note:
        parts.append(f"— {figure.note}")
    return " ".join(parts)


def summary_table(figures: list[Figure]) -> str:
    peers = list(dict.fromkeys(peer for figure in figures for peer in figure.peers))
    header = ["figure", "measured", "target", "pass", *[f"vs {p}" for p in peers]]
    rows = [header]
    for f in figures:
        verdict = {None: "-", True: "PASS", False: "FAIL"}[f.passed]
        ratios = [format_ratio(f.ratio(p)) for p in peers]
        rows.append([f.label, format_value(f.value, f.unit), format_target(f), verdict, *ratios])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_results(ctx: Context, facts: dict[str, str], seconds: float) -> Path:
    path = ctx.out / "results.json"
    data = {
        "scale": ctx.scale,
        "seconds": seconds,
        "machine": facts,
        "figures": [{**asdict(f), "passed": f.passed} for f in ctx.figures],
        "notes": ctx.notes,
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def power(n: int) -> str:
    """10^k for powers of ten, else the number with thousands separators."""
    k = len(str(n)) - 1
    return f"10^{k}" if n == 10**k else f"{n:,}"
