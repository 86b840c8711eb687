"""Run cqrs_lab's benchmarks and print each figure beside its target and its peers.

    python bench/run.py                          # every benchmark, small scale (< 1 min target)
    python bench/run.py --scale full             # the published figures (~15 min)
    python bench/run.py --only eventlog.latency  # one benchmark (eventlog) or one part of it
    python bench/run.py --out /tmp/b --keep      # choose the output folder, keep the data there

Output (results.json, profiles, working data) goes to a new temporary folder unless --out is
given; never into the repository. Run it as a script: its sibling modules are imported by name.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import eventlog_bench
import projections_bench
import services_bench
from harness import Context, machine_facts, save_results, summary_table

# benchmark name -> its parts (add later issues' benchmarks here)
BENCHMARKS: dict[str, dict[str, Callable[[Context], None]]] = {
    "eventlog": eventlog_bench.PARTS,
    "services": services_bench.PARTS,
    "projections": projections_bench.PARTS,
}


def selected(only: list[str]) -> list[tuple[str, str, Callable[[Context], None]]]:
    """(benchmark, part, function) for every part named by --only (all of them if none)."""
    chosen = []
    for bench, parts in BENCHMARKS.items():
        for part, function in parts.items():
            if not only or bench in only or f"{bench}.{part}" in only:
                chosen.append((bench, part, function))
    known = {*BENCHMARKS, *(f"{b}.{p}" for b, parts in BENCHMARKS.items() for p in parts)}
    unknown = sorted(set(only) - known)
    if unknown:
        sys.exit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(sorted(known))}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small", "full"], default="small")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="benchmark or benchmark.part to run (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and databases")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile cqrs_lab's timed regions (inflates their timings)",
    )
    args = parser.parse_args(argv)

    parts = selected(args.only)
    out = args.out or Path(tempfile.mkdtemp(prefix="cqrs-lab-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(scale=args.scale, out=out, keep=args.keep, profile=args.profile)
    facts = machine_facts(out)
    ctx.say(f"cqrs_lab benchmarks, scale={args.scale}, output in {out}")
    for name, value in facts.items():
        ctx.say(f"  {name:>13}: {value}")

    started = time.perf_counter()
    for bench, part, function in parts:
        with_time, load = time.perf_counter(), os.getloadavg()[0]
        function(ctx)
        ctx.info(
            f"{bench}.{part} took {time.perf_counter() - with_time:.1f} s "
            f"(1-min load average {load:.2f} before, {os.getloadavg()[0]:.2f} after)"
        )
    seconds = time.perf_counter() - started

    facts["load average at end"] = machine_facts(out)["load average"]
    ctx.say("\nSummary (ratio = how many times better cqrs_lab is than the peer; < 1: worse)\n")
    ctx.say(summary_table(ctx.figures))
    if args.profile:
        ctx.say("\nNOTE: --profile was on: cqrs_lab timings include cProfile overhead.")
    path = save_results(ctx, facts, seconds)
    ctx.say(
        f"\nscale={args.scale}: {seconds:.1f} s; load average at end "
        f"{facts['load average at end']}; results in {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
