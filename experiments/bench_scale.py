"""Wall time and peak memory of a large simulation: ``fl-sim run`` with many virtual clients.

Runs ``fl-sim run`` as a child process with the given ``--set`` options and samples, every
``--interval`` seconds, the memory of every process it started (the SuperLink, the ServerApp,
Ray's processes and client actors), read from /proc: the sum of PSS (shared pages split
between the processes that map them, the honest total) and of RSS (shared pages counted in
every process), and the largest single RSS. Prints them with the wall time at the end, and
the peak PSS and RSS of each kind of process (named by its command line).

    python -m experiments.bench_scale --out results/scale100 \\
        --set clients=100 --set fraction=0.1 --set rounds=3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fl_sim.ops.launcher import descendants


@dataclass
class Peak:
    pss_total: int = 0  # kB
    rss_total: int = 0
    rss_max: int = 0
    processes: int = 0
    # per process: (kind, peak PSS, peak RSS), kB
    each: dict[int, tuple[str, int, int]] = field(default_factory=dict)


def kind_of(pid: int) -> str:
    """A short name of what a process runs: Ray's title, or the module / script it started."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    args = [a for a in args if a]
    if not args:
        return "?"
    if args[0].startswith("ray::"):
        return args[0].split()[0].removesuffix(".run")
    if "-c" in args[:2]:
        return "python -c"
    if "-m" in args[:-1]:
        return args[args.index("-m") + 1]
    scripts = [a for a in args[1:] if not a.startswith("-")]
    return Path(scripts[0] if scripts and "python" in args[0] else args[0]).name


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in kB, (0, 0) if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Pss:", "Rss:"):
            values[parts[0]] = int(parts[1])
    return values.get("Pss:", 0), values.get("Rss:", 0)


def sample(root: int, peak: Peak, stop: threading.Event, interval: float) -> None:
    while not stop.is_set():
        pids = [root, *descendants(root)]
        mems = [memory_kb(p) for p in pids]
        for pid, (pss, rss) in zip(pids, mems, strict=True):
            kind, top_pss, top_rss = peak.each.get(pid) or ("?", 0, 0)
            # the latest name: Ray's workers retitle themselves (ray::ClientAppActor)
            name = kind_of(pid)
            kind = kind if name == "?" else name
            peak.each[pid] = (kind, max(top_pss, pss), max(top_rss, rss))
        peak.pss_total = max(peak.pss_total, sum(p for p, _ in mems))
        peak.rss_total = max(peak.rss_total, sum(r for _, r in mems))
        peak.rss_max = max(peak.rss_max, max((r for _, r in mems), default=0))
        peak.processes = max(peak.processes, len(pids))
        stop.wait(interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "fl_sim.cli", "run", "--out", args.out, "--overwrite"]
    for item in args.overrides:
        cmd += ["--set", item]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak, stop = Peak(), threading.Event()
    sampler = threading.Thread(target=sample, args=(proc.pid, peak, stop, args.interval))
    sampler.start()
    code = proc.wait()
    stop.set()
    sampler.join()
    wall = time.perf_counter() - start
    gib = 1024 * 1024
    print(
        f"exit code {code}; wall {wall:.0f} s; peak memory of the process tree: "
        f"PSS {peak.pss_total / gib:.2f} GiB, RSS sum {peak.rss_total / gib:.2f} GiB, "
        f"largest process RSS {peak.rss_max / gib:.2f} GiB, up to {peak.processes} processes",
        flush=True,
    )
    kinds: dict[str, list[tuple[int, int]]] = {}
    for kind, pss, rss in peak.each.values():
        kinds.setdefault(kind, []).append((pss, rss))
    mib = 1024
    for kind, peaks in sorted(kinds.items(), key=lambda kv: -max(r for _, r in kv[1])):
        pss = max(p for p, _ in peaks) / mib
        rss = max(r for _, r in peaks) / mib
        print(f"  {kind}: {len(peaks)} process(es), peak PSS {pss:.0f} MiB, RSS {rss:.0f} MiB")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
