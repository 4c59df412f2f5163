"""Progress, cancellation, supervised subprocesses and background jobs.

Core functions take a `Progress`; the CLI draws it as a bar, the MCP server turns it into progress
notifications and a `job_status` answer. Cancelling sets an event that every step checks and kills
the child processes the step registered, whose partial outputs `atomic_output` then removes.
"""

from __future__ import annotations

import collections
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.errors import Cancelled, ServingError
from model_serving.util.process import kill_group, spawn

ProgressCallback = Callable[[float, str], None]


class Progress:
    """A fraction in [0, 1], a message, a cancel flag and the child processes to kill on cancel."""

    def __init__(self, callback: ProgressCallback | None = None) -> None:
        self._callbacks: list[ProgressCallback] = [callback] if callback else []
        self.fraction = 0.0
        self.message = ""
        self.cancel_event = threading.Event()
        self._procs: set[subprocess.Popen[Any]] = set()
        self._lock = threading.RLock()  # cancel() may run in a signal handler on the thread holding it
        self._span = (0.0, 1.0)

    def subscribe(self, callback: ProgressCallback) -> None:
        self._callbacks.append(callback)

    def span(self, start: float, end: float) -> Progress:
        """A view for a sub-step: its 0..1 maps onto start..end of this one."""
        child = Progress()
        child._callbacks = self._callbacks
        child.cancel_event = self.cancel_event
        child._procs = self._procs
        child._lock = self._lock
        lo, hi = self._span
        child._span = (lo + (hi - lo) * start, lo + (hi - lo) * end)
        child._parent = self  # type: ignore[attr-defined]
        return child

    def update(self, fraction: float | None = None, message: str | None = None) -> None:
        self.check()
        lo, hi = self._span
        if fraction is not None:
            value = lo + (hi - lo) * min(max(fraction, 0.0), 1.0)
        else:
            value = getattr(self, "_parent", self).fraction
        target: Progress = getattr(self, "_parent", self)
        while hasattr(target, "_parent"):
            target = target._parent  # type: ignore[attr-defined]
        target.fraction = max(target.fraction, value)  # progress never goes backwards
        if message is not None:
            target.message = message
        for callback in self._callbacks:
            callback(target.fraction, target.message)

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

    def cancel(self) -> None:
        self.cancel_event.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            kill_tree(proc)

    def attach(self, proc: subprocess.Popen[Any]) -> None:
        with self._lock:
            self._procs.add(proc)
        if self.cancel_event.is_set():
            kill_tree(proc)

    def detach(self, proc: subprocess.Popen[Any]) -> None:
        with self._lock:
            self._procs.discard(proc)


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    kill_group(proc)  # children lead their own process group (util.process.spawn)


def run_process(
    argv: Sequence[str | os.PathLike[str]],
    progress: Progress | None = None,
    *,
    cwd: str | None = None,
    env: dict[str, str | None] | None = None,
    on_line: Callable[[str], None] | None = None,
    tail: int = 40,
) -> tuple[int, str]:
    """Run argv (never a shell) under `util.process.spawn`, streaming its merged output; return (exit code, last lines).

    `env` adds to (None: removes from) the scrubbed child environment. Cancelling `progress` kills the child's group.
    """
    progress = progress or Progress()
    progress.check()
    lines: collections.deque[str] = collections.deque(maxlen=tail)
    proc = spawn(argv, progress, cwd=cwd, env=env)  # user-supplied values were passed through paths.refuse_flag by the caller
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if on_line:
                on_line(line)
        proc.wait()
    finally:
        if proc.poll() is None:
            kill_tree(proc)
            proc.wait()
        progress.detach(proc)
    progress.check()
    return proc.returncode, "\n".join(lines)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


JobState = Literal["running", "succeeded", "failed", "cancelled"]


class JobInfo(BaseModel):
    """A handle on long work: poll it with job_status, stop it with job_cancel."""

    job_id: str
    kind: str
    state: JobState
    progress: float = Field(description="0..1")
    message: str = ""
    started_at: str
    finished_at: str | None = None
    result: dict[str, Any] | None = Field(default=None, description="The step's result once it succeeded")
    error: dict[str, str] | None = Field(default=None, description="cause and next_step once it failed")


class Job:
    def __init__(self, kind: str, fn: Callable[[Progress], BaseModel]) -> None:
        self.id = secrets.token_urlsafe(12)  # unguessable: possession of a handle is all it takes
        self.kind = kind
        self.progress = Progress()
        self.state: JobState = "running"
        self.started_at = _now()
        self.finished_at: str | None = None
        self.result: BaseModel | None = None
        self.error: dict[str, str] | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"job-{kind}", daemon=True)

    def _run(self, fn: Callable[[Progress], BaseModel]) -> None:
        try:
            self.result = fn(self.progress)
            self.state = "succeeded"
            self.progress.fraction = 1.0
        except Cancelled as exc:
            self.state, self.error = "cancelled", exc.to_dict()
        except ServingError as exc:
            self.state, self.error = "failed", exc.to_dict()
        except Exception as exc:  # a bug: report it without leaking internals to the client
            self.state = "failed"
            self.error = {"error": type(exc).__name__, "cause": f"Internal error: {exc}", "next_step": "Report this with the server log.", "detail": ""}
        finally:
            self.finished_at = _now()
            self.done.set()

    def info(self) -> JobInfo:
        return JobInfo(
            job_id=self.id, kind=self.kind, state=self.state, progress=round(self.progress.fraction, 4),
            message=self.progress.message, started_at=self.started_at, finished_at=self.finished_at,
            result=self.result.model_dump(mode="json") if self.result is not None else None, error=self.error,
        )


class JobManager:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[[Progress], BaseModel]) -> Job:
        job = Job(kind, fn)
        with self._lock:
            self._jobs[job.id] = job
        job._thread.start()
        return job

    def get(self, job_id: str) -> Job:
        from model_serving.errors import InputError

        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise InputError(f"No job has the id {job_id!r}.", "List jobs with job_status and no id, or start the step again.")
        return job

    def list(self) -> list[JobInfo]:
        with self._lock:
            return [job.info() for job in self._jobs.values()]

    def cancel(self, job_id: str, wait: float = 10.0) -> JobInfo:
        job = self.get(job_id)
        job.progress.cancel()
        job.done.wait(wait)
        return job.info()

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if not job.done.is_set():
                job.progress.cancel()
        for job in jobs:
            job.done.wait(10)
