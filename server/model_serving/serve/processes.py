"""The process layer under every engine: ports, the one health wait, the one liveness check, stopping, memory.

Each engine (serve/engines.py) starts its process through `launch` (util/process.spawn: argv list, scrubbed
environment, own process group, parent death while it starts), waits with `wait_healthy`, and is later
found alive or dead with `alive`, and stopped with `terminate`. Nothing here knows which engine it runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from model_serving.errors import ServingError
from model_serving.jobs import Progress
from model_serving.util.process import kill_group, pid_alive, spawn

STOP_GRACE_S = 15.0
HEALTH_POLL_TIMEOUT_S = 2.0
# What an engine process's command line names: a recycled pid names none of them.
ENGINE_MARKERS = ("model_serving.serve.embedded.worker",  # the llama.cpp worker (adapters: the name front)
                  "model_serving/serve/vllm/launcher.py",  # vLLM's supervised launcher
                  "model_serving.serve.replicas.router_worker",  # vllm-router in front of a name's replicas
                  "model_serving.serve.gateway.worker",  # the gateway: our front, llama.cpp's router as its child
                  "/llama-server\0")  # the natively compiled llama.cpp server: a model, or the gateway in router mode


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether `pid` is one of our engine processes (not a recycled pid of something else)."""
    return pid_alive(pid, markers=ENGINE_MARKERS)


def terminate(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM one of our engine processes, then SIGKILL after `grace_s`."""
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rss(pid: int) -> int | None:
    """Resident memory of the engine process and its children (vLLM's engine core is a child of its server)."""
    total, stack = None, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total = (total or 0) + int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo; None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def log_tail(log_path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def launch(argv: Sequence[str | os.PathLike[str]], log_path: Path, env: Mapping[str, str | None] | None = None) -> subprocess.Popen[bytes]:
    """Start an engine process with its stdout and stderr in `log_path` (util/process.spawn's rules)."""
    with log_path.open("wb") as log:
        return spawn(argv, stdout=log, text=False, env=env)


def healthy(base_url: str, timeout_s: float = HEALTH_POLL_TIMEOUT_S) -> bool:
    """One /health request: 200 means ready (llama.cpp answers 503 while it loads, vLLM and vllm-router nothing)."""
    try:
        return httpx.get(f"{base_url}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(proc: subprocess.Popen, name: str, base_url: str, log_path: Path, progress: Progress, *, timeout_s: float,
                 what: str = "llama.cpp server", hint: str = "a corrupt GGUF or too little memory are the usual causes",
                 poll_s: float = 0.2, poll_timeout_s: float = HEALTH_POLL_TIMEOUT_S) -> None:
    """Return once `base_url` answers /health with 200; kill `proc`'s process group and raise if it exits, hangs or is cancelled."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            progress.check()
            if proc.poll() is not None:
                raise ServingError(f"The {what} for {name} exited during start-up (exit code {proc.returncode}).",
                                   f"Read the last lines of its log below (all of it: {log_path}); {hint}.", detail=log_tail(log_path))
            if healthy(base_url, poll_timeout_s):
                return
            if time.monotonic() > deadline:
                raise ServingError(f"The {what} for {name} did not become healthy within {timeout_s:.0f} s.",
                                   f"Read its log at {log_path}", detail=log_tail(log_path))
            progress.update(None, f"{what}: loading")
            time.sleep(poll_s)
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise


__all__ = ["ENGINE_MARKERS", "alive", "available_bytes", "free_port", "healthy", "launch", "log_tail", "port_free", "rss", "terminate",
           "wait_healthy"]
