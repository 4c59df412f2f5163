"""Finding our child processes in /proc, running the CLI as a real process, and waiting without sleeping blind."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from model_serving.jobs import Progress

# What each child kind has in its argv.
QUANTIZE_WORKER = "quantize/worker.py"
QUALITY_CHILD = "model_serving.quantize.quality"
CONVERTER = "convert_hf_to_gguf.py"
ENGINE_WORKER = "model_serving.serve.embedded.worker"
ALL_KINDS = (QUANTIZE_WORKER, QUALITY_CHILD, CONVERTER, ENGINE_WORKER)
# With the native llama.cpp build the engine and quantize children are its binaries, not our Python workers
MARKERS = {ENGINE_WORKER: (ENGINE_WORKER, "/llama-server"), QUANTIZE_WORKER: (QUANTIZE_WORKER, "/llama-quantize")}


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def children_of_ours(marker: str, kinds: tuple[str, ...] = ALL_KINDS) -> list[int]:
    """Live pids of our worker kinds whose argv mentions `marker` (a test's own tmp_path); zombies excluded."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = cmdline(int(entry))
        text = " ".join(argv)
        if marker in text and any(m in text for kind in kinds for m in MARKERS.get(kind, (kind,))) and _state(int(entry)) not in ("Z", "X", None):
            found.append(int(entry))
    return found


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll until `condition()` is truthy; fail the test with `what` after `timeout` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def partials(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*.partial"))


class BackgroundWork:
    """Run `work(progress)` in a thread; the test cancels it (or not) and collects what it raised."""

    def __init__(self, work: Callable[[Progress], object]) -> None:
        self.progress = Progress()
        self.error: BaseException | None = None
        self.result: object = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[Progress], object]) -> None:
        try:
            self.result = work(self.progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def join(self, timeout: float = 120) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the work did not end"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


class Cli:
    """`model-serving ARGS` as a real process, its stderr read line by line."""

    def __init__(self, home: Path, *args: str) -> None:
        env = {**os.environ, "MODEL_SERVING_HOME": str(home), "OLLAMA_HOST": "http://127.0.0.1:9"}
        self.proc = subprocess.Popen([sys.executable, "-m", "model_serving", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, fragment: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the CLI ended (exit {self.proc.wait()}) before printing {fragment!r}: {self.seen[-5:]}")
            self.seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no line with {fragment!r} within {timeout:.0f} s: {self.seen[-5:]}")

    def finish(self, timeout: float = 120) -> tuple[int, list[str]]:
        code = self.proc.wait(timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        return code, self.seen
