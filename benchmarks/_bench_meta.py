"""What every benchmark writes beside its numbers, so results from different commits compare.

Each measurement runs inside a `LoadWatch`, which records the 1-minute load average before and
after it, and the cores' use sampled just before it starts. A result is `comparable: false` when
the machine was busy with other work: more than half the cores in use just before a measurement (a
sample, not the load average, which lags a minute and so carried the benchmark's own previous
measurement into the next), or load above the cores after it once the benchmark's own share is taken
out (its CPU seconds over the wall time, for this process and the processes it started: a benchmark
that keeps two cores busy must not call a quiet machine busy).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from model_serving.util.process import busy_cores

ROOT = Path(__file__).resolve().parent.parent
CPUS = os.cpu_count() or 1
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _descendants(pid: int) -> set[int]:
    found, stack = set(), [pid]
    while stack:
        current = stack.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                children = {int(c) for c in (task / "children").read_text().split()} - found
                found |= children
                stack.extend(children)
        except (OSError, ValueError):
            continue
    return found


def _process_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime and stime, in clock ticks


def _cpu_by_process(extra: Iterable[int]) -> dict[int | str, float]:
    """CPU seconds so far: this process with its reaped children, and each live descendant or named process."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    out: dict[int | str, float] = {"self": sum(u.ru_utime + u.ru_stime for u in usage)}
    for pid in _descendants(os.getpid()) | set(extra):
        if (seconds := _process_cpu(pid)) is not None:
            out[pid] = seconds
    return out


class LoadWatch:
    """The load average around one measurement, and the benchmark's own share of it.

    The benchmark's own share counts this process and every process it started (a server in a child
    process, the engine), plus any named in `pids`; a child that ends during the measurement counts
    with its whole CPU time, so the share errs high only for children started before the watch.
    """

    def __init__(self, name: str, pids: Sequence[int] = ()) -> None:
        self.name = name
        self.pids = list(pids)
        self.before = self.after = self.own = self.busy_before = 0.0
        self._began = 0.0
        self._cpu: dict[int | str, float] = {}

    def __enter__(self) -> LoadWatch:
        self.before, self.busy_before = load_average(), busy_cores()
        self._began, self._cpu = time.monotonic(), _cpu_by_process(self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.monotonic() - self._began, 1e-6)
        self.after = load_average()
        now = _cpu_by_process(self.pids)
        used = sum(seconds - self._cpu.get(key, 0.0) for key, seconds in now.items())
        self.own = max(used, 0.0) / wall

    @property
    def others_after(self) -> float:
        return max(self.after - self.own, 0.0)

    @property
    def busy(self) -> bool:
        return self.busy_before > CPUS / 2 or self.others_after > CPUS

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "load_before": round(self.before, 2), "busy_cores_before": round(self.busy_before, 2),
                "load_after": round(self.after, 2),
                "own_load": round(self.own, 2), "others_load_after": round(self.others_after, 2), "busy": self.busy}


def run_metadata(watches: Sequence[LoadWatch] = ()) -> dict[str, Any]:
    from model_serving import __version__

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    busy = [w.name for w in watches if w.busy]
    return {
        "commit": commit,
        "version": __version__,
        "machine": {"cpus": CPUS, "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_1m": load_average()},  # a shared machine: load explains outliers
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load": [w.as_dict() for w in watches],
        "comparable": bool(watches) and not busy,
        "comparable_note": (f"the machine was busy (other work on over half its {CPUS} cores before, or load above them after) during: {', '.join(busy)}" if busy
                            else "no measurement was watched" if not watches else f"load stayed within the {CPUS} cores"),
    }


def write_report(path: Path, report: dict[str, Any], watches: Sequence[LoadWatch] = ()) -> None:
    report = {**report, **run_metadata(watches)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
