"""The one rule for a quiet machine: other processes use less than 0.2 cores before and during a measurement.

"Other" is everything but the benchmark's own process tree: the measuring process, its live children
and their descendants (the client, the engines it started), any process named as its own (a served
engine that outlived the CLI that started it), and any process started while a watch was open, found
by the tag the watch puts in the environment every child inherits (an engine started through a
launcher that exits is re-parented and leaves the tree, but keeps its environment). Both sides are
read from /proc:

- the machine's busy time from /proc/stat (all processes, including short-lived ones such as a
  compiler's, which a per-process scan between two samples would miss);
- the own tree's share as deltas of each live member's utime+stime (/proc/PID/stat), plus the time of
  members reaped during the window (their parent's cutime+cstime delta less what they had used at the
  window's start). Never a cumulative reaped-children total: that counts a child's whole lifetime and
  once read 13 cores' worth on a 2-core machine, hiding everyone else.

The load average plays no part: it lags a minute and cannot tell whose load it is.
A window that breaks the rule makes its result `comparable: false`, with the measured other-load.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OTHERS_LIMIT_CORES = 0.2
BEFORE_S = 0.5  # the sample taken right before a measurement starts
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")
TAG_ENV = "MODEL_SERVING_QUIET_TAG"
RULE = f"other processes used less than {OTHERS_LIMIT_CORES} cores before and during each measurement (sampled from /proc)"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in (_PROC / str(pid) / "task").iterdir():
            found |= {int(c) for c in (task / "children").read_text().split()}
    except (OSError, ValueError):
        pass
    return found


def tagged(tag: str | None) -> set[int]:
    """Live processes whose environment carries the watch's tag (other users' processes cannot be read: not ours)."""
    if not tag:
        return set()
    needle = f"{TAG_ENV}={tag}".encode()
    found: set[int] = set()
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def own_tree(roots: Iterable[int], tag: str | None = None) -> set[int]:
    """The roots that are alive, the processes carrying `tag`, and all their live descendants."""
    found: set[int] = set()
    stack = [pid for pid in roots if pid > 0 and (_PROC / str(pid)).exists()] + sorted(tagged(tag))
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(_children(pid) - found)
    return found


def _machine_ticks() -> tuple[int, int] | None:
    """(total, busy) clock ticks of all CPUs from /proc/stat; busy leaves out idle and iowait."""
    try:
        fields = [int(x) for x in (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(fields[:8])  # guest time is already inside user time
    return total, total - fields[3] - (fields[4] if len(fields) > 4 else 0)


@dataclass
class Snapshot:
    """CPU times at one moment: the machine's, and each own-tree member's (own, reaped children) in seconds, with its parent."""

    at: float
    machine: tuple[int, int] | None
    own: dict[int, tuple[float, float, int]] = field(default_factory=dict)


def snapshot(roots: Iterable[int], tag: str | None = None) -> Snapshot:
    own: dict[int, tuple[float, float, int]] = {}
    for pid in own_tree(roots, tag):
        if (f := _stat_fields(pid)) is not None:
            own[pid] = ((int(f[11]) + int(f[12])) / _TICKS, (int(f[13]) + int(f[14])) / _TICKS, int(f[1]))
    return Snapshot(time.monotonic(), _machine_ticks(), own)


@dataclass(frozen=True)
class Sample:
    """Cores' worth of CPU over one window: the whole machine, the benchmark's own tree, and the rest."""

    window: str
    seconds: float
    machine_cores: float | None
    own_cores: float
    others_cores: float | None

    @property
    def quiet(self) -> bool:
        return self.others_cores is not None and self.others_cores < OTHERS_LIMIT_CORES

    def as_dict(self) -> dict[str, Any]:
        return {"window": self.window, "seconds": round(self.seconds, 2), "machine_cores": _r(self.machine_cores),
                "own_cores": round(self.own_cores, 3), "others_cores": _r(self.others_cores), "quiet": self.quiet}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def between(a: Snapshot, b: Snapshot, window: str) -> Sample:
    """What the machine, the own tree and everything else used between two snapshots."""
    wall = max(b.at - a.at, 1e-6)
    own = 0.0
    for pid, (cpu, reaped, _) in b.own.items():
        before_cpu, before_reaped, _ = a.own.get(pid, (0.0, 0.0, 0))  # a member that joined started inside the window
        own += max(cpu - before_cpu, 0.0) + max(reaped - before_reaped, 0.0)
    # a member reaped inside the tree brought its whole lifetime (and its own reaped children's) into a surviving
    # ancestor's cutime, counted above: take back what it had used before the window
    own -= sum(cpu + reaped for pid, (cpu, reaped, _) in a.own.items() if pid not in b.own and _survivor(pid, a, b))
    own = max(own, 0.0)
    if a.machine is None or b.machine is None or b.machine[0] <= a.machine[0]:
        return Sample(window, wall, None, own / wall, None)
    cpus = os.cpu_count() or 1
    machine = (b.machine[1] - a.machine[1]) / (b.machine[0] - a.machine[0]) * cpus
    return Sample(window, wall, machine, own / wall, max(machine - own / wall, 0.0))


def _survivor(pid: int, a: Snapshot, b: Snapshot) -> bool:
    """Whether a member gone by `b` had an ancestor (as of `a`) still in the tree at `b`, which reaped its time."""
    seen: set[int] = set()
    while pid in a.own and pid not in seen:
        seen.add(pid)
        pid = a.own[pid][2]
        if pid in b.own:
            return True
    return False


def sample(roots: Iterable[int], seconds: float = BEFORE_S, window: str = "before", tag: str | None = None) -> Sample:
    """One sample of `seconds` now (the 'before' window of a measurement)."""
    roots = list(roots)
    first = snapshot(roots, tag)
    time.sleep(seconds)
    return between(first, snapshot(roots, tag), window)


def is_quiet(samples: Sequence[Sample | dict[str, Any]]) -> bool:
    """The rule over every window of a result: each one sampled, each under the limit."""
    return bool(samples) and all(s.quiet if isinstance(s, Sample) else bool(s.get("quiet")) for s in samples)


def worst_others(samples: Sequence[Sample | dict[str, Any]]) -> float | None:
    values = [s.others_cores if isinstance(s, Sample) else s.get("others_cores") for s in samples]
    known = [v for v in values if v is not None]
    return max(known) if known else None


class QuietWatch:
    """Samples before (`before_s`, 0 for none) and over a measurement; `samples` holds both windows."""

    def __init__(self, name: str, pids: Sequence[int] = (), before_s: float = BEFORE_S) -> None:
        self.name = name
        self.roots = [os.getpid(), *(p for p in pids if p)]
        self.before_s = before_s
        self.samples: list[Sample] = []
        self._start: Snapshot | None = None
        self._outer_tag = os.environ.get(TAG_ENV)
        self.tag = self._outer_tag or secrets.token_hex(8)  # a watch inside another shares its tag

    def __enter__(self) -> QuietWatch:
        os.environ[TAG_ENV] = self.tag  # every process started from here on inherits it
        if self.before_s > 0:
            self.samples.append(sample(self.roots, self.before_s, "before", self.tag))
        self._start = snapshot(self.roots, self.tag)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._start is not None:
            self.samples.append(between(self._start, snapshot(self.roots, self.tag), "during"))
        if self._outer_tag is None:
            os.environ.pop(TAG_ENV, None)

    @property
    def quiet(self) -> bool:
        return is_quiet(self.samples)

    @property
    def others_cores(self) -> float | None:
        return worst_others(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "quiet": self.quiet, "others_cores": _r(self.others_cores),
                "samples": [s.as_dict() for s in self.samples]}


def verdict(watches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`comparable` and its note for a result from its watches' `as_dict()` records, by the rule."""
    if not watches:
        return {"comparable": False, "comparable_note": f"no measurement was sampled, so it cannot be shown that {RULE}"}
    loud = [w for w in watches if not w.get("quiet")]
    if not loud:
        worst = worst_others([s for w in watches for s in w.get("samples", [])])
        return {"comparable": True, "comparable_note": f"{RULE}: at most {worst:.2f}" if worst is not None else RULE}
    named = ", ".join(f"{w.get('name')} ({_cores(w.get('others_cores'))})" for w in loud)
    return {"comparable": False, "comparable_note": f"never a baseline: other processes were busy during {named}; "
                                                    f"the rule is that {RULE}"}


def _cores(value: float | None) -> str:
    return "not measurable here" if value is None else f"{value:.2f} cores"
