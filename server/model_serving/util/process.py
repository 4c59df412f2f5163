"""Starting the child processes we supervise: one environment, one process group, one parent-death rule.

Every child we start (the quantize worker, the quality evaluation, llama.cpp's converter, the engine
worker) goes through `spawn`: an argv list (never a shell), the scrubbed environment of
`child_env`, a process group of its own (so cancelling kills its whole tree and a Ctrl-C in the
terminal reaches us, not it), and registration with the caller's progress for cancel.

A child asks the kernel to SIGKILL it when its parent dies by calling `die_with_parent()` first
thing at start-up (our worker entry points do; the third-party converter is started through
`model_serving.util.launch`, which does and then runs the script). `preexec_fn` would do the same
before exec, but it is unsafe in a process with threads, which the MCP server is.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from model_serving.util.launch import PARENT_ENV, die_with_parent, outlive_parent

# Names that must never reach a child, beyond the pattern below.
SECRET_NAMES = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OLLAMA_API_KEY"})
SECRET_PATTERN = re.compile(r"(_TOKEN|_KEY|_SECRET)$|PASSWORD|^TOKEN$|^SECRET$", re.IGNORECASE)
LAUNCHER = Path(__file__).with_name("launch.py")


class Supervisor(Protocol):
    """What `spawn` needs from a `jobs.Progress` (named structurally: util/ sits below jobs)."""

    def attach(self, proc: subprocess.Popen[Any]) -> None: ...


def is_secret(name: str) -> bool:
    return name.upper() in SECRET_NAMES or bool(SECRET_PATTERN.search(name))


def child_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The parent's environment without anything secret-looking, with `extra` (None removes) and our pid."""
    env = {k: v for k, v in os.environ.items() if not is_secret(k)}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        elif not is_secret(key):
            env[key] = value
    env[PARENT_ENV] = str(os.getpid())
    return env


# llama.cpp's OpenMP threads meet at a barrier after every operation of the graph, hundreds of times per token.
# Spinning forever (ACTIVE) keeps a core busy while an engine is idle; sleeping at once (PASSIVE) wakes too late for each
# step on a quiet machine. OpenMP's default spins 300,000 turns (milliseconds) before it sleeps, and libgomp drops that
# to 1,000 only when its own threads outnumber the cores; it cannot see other processes. When they hold a core (another
# job, or the bench client beside the engine), the thread that reaches a barrier first spins away the core that the
# thread it waits for needs, so every barrier costs a scheduler time slice and every stream of the engine crawls
# together: the soak's stalls, where all requests in flight at once ran past their limit. So we spin as briefly as
# libgomp does when it knows it is oversubscribed (a quiet step's barriers still meet within the spin), unless the
# user chose a policy or a spin count.
SPIN_COUNT = "1000"


def openmp_env() -> dict[str, str]:
    """The OpenMP settings a llama.cpp child gets: the user's OMP_WAIT_POLICY or GOMP_SPINCOUNT, else a brief spin."""
    chosen = {name: os.environ[name] for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if os.environ.get(name)}
    return chosen or {"GOMP_SPINCOUNT": SPIN_COUNT}


def busy_cores(sample_s: float = 0.25) -> float:
    """Cores' worth of CPU that something was using over the last `sample_s` (from /proc/stat; 0 where it is absent).

    A sample, not the load average: that lags by a minute, so right after a benchmark's own measurement an idle
    machine still reads busy."""
    def times() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(sample_s)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return 0.0
    spent = total1 - total0
    return (1.0 - (idle1 - idle0) / spent) * (os.cpu_count() or 1) if spent > 0 else 0.0


def python_argv(target: str | Path, *args: str | os.PathLike[str]) -> list[str]:
    """argv for a Python child: a module name (`-m`), or a script run by path with -P (no script dir on sys.path)."""
    head = [sys.executable, "-P", str(target)] if isinstance(target, Path) else [sys.executable, "-m", target]
    return [*head, *(os.fspath(a) for a in args)]


def launcher_argv(script: str | Path, *args: str | os.PathLike[str]) -> list[str]:
    """argv that runs a third-party Python script under our parent-death launcher."""
    return python_argv(LAUNCHER, script, *args)


def native_argv(binary: str | Path, *args: str | os.PathLike[str]) -> list[str] | None:
    """argv that runs a compiled binary with the parent-death signal armed, or None where util-linux's setpriv is missing.

    A native child cannot call `die_with_parent` itself; setpriv arms it and execs the binary (the
    signal survives exec), for about a millisecond where a Python launcher costs tens.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--pdeathsig", "KILL", "--", os.fspath(binary), *(os.fspath(a) for a in args)]


def spawn(argv: Sequence[str | os.PathLike[str]], supervisor: Supervisor | None = None, *, env: Mapping[str, str | None] | None = None,
          cwd: str | os.PathLike[str] | None = None, stdout: Any = subprocess.PIPE, stderr: Any = subprocess.STDOUT,
          text: bool = True) -> subprocess.Popen[Any]:
    """Start argv in its own process group with the scrubbed environment (plus `env`), attached to `supervisor`."""
    proc = subprocess.Popen(
        [os.fspath(a) for a in argv], cwd=cwd, env=child_env(env), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
        text=text, errors="replace" if text else None, bufsize=1 if text else -1, process_group=0,
    )
    if supervisor is not None:
        supervisor.attach(proc)
    return proc


__all__ = ["PARENT_ENV", "child_env", "die_with_parent", "is_secret", "kill_group", "launcher_argv", "native_argv", "outlive_parent", "pid_alive",
           "python_argv", "spawn", "start_time"]


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the child's whole process group (it leads one, see `spawn`)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None when it is gone.

    Where there is no /proc (not Linux), 0 for a pid that exists: the pid alone has to do there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if sys.platform.startswith("linux"):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    return int(stat.rpartition(")")[2].split()[19])


def pid_alive(pid: int | None, *, started: int | None = None, markers: Sequence[str] = ()) -> bool:
    """The one liveness check: `pid` runs, and is the process we mean, not a recycled pid.

    `started` (a `start_time` taken from the process when it was recorded) must match; where `markers` are given its
    command line must hold one of them. Without /proc, the pid alone decides."""
    if not pid or pid <= 0:
        return False
    now = start_time(pid)
    if now is None:
        return False
    if now == 0:
        return True  # no /proc to tell a recycled pid apart
    if started is not None and started not in (0, now):
        return False
    if markers:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return any(marker.encode() in cmdline for marker in markers)
    return True
