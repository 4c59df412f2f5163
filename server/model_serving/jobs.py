"""Progress, cancellation, supervised subprocesses and background jobs.

Core functions take a `Progress`; the CLI draws it as a bar, the MCP server turns it into progress
notifications and a `job_status` answer. Cancelling sets an event that every step checks and kills
the child processes the step registered, whose partial outputs `atomic_output` then removes.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.errors import Cancelled, InputError, ServingError
from model_serving.util.paths import write_text_atomic
from model_serving.util.process import kill_group, pid_alive, spawn

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
        self._report(fraction, message)

    def complete(self, message: str) -> None:
        """Report the end of work whose result is already in place: a cancel that comes now is too late to undo it."""
        self._report(1.0, message)

    def _report(self, fraction: float | None, message: str | None) -> None:
        lo, hi = self._span
        if fraction is not None:
            value = lo + (hi - lo) * min(max(fraction, 0.0), 1.0)
        else:
            value = getattr(self, "_parent", self).fraction
        target: Progress = getattr(self, "_parent", self)
        while hasattr(target, "_parent"):
            target = target._parent
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
    env: Mapping[str, str | None] | None = None,
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


# Names and states follow the MCP tasks extension, so an agent that knows tasks reads a job without a guide.
JobStatus = Literal["working", "completed", "failed", "cancelled"]
POLL_INTERVAL_MS = 2000
KEEP_JOBS = 100  # finished records kept on disk; older ones are pruned


def _alive(pid: int | None) -> bool:
    """Whether the server that wrote a record still runs (another server may share this state dir)."""
    if not pid or pid == os.getpid():
        return False  # this process just started: a job recorded under its pid belonged to an earlier life
    return pid_alive(pid)


def describe_failure(exc: BaseException) -> dict[str, str]:
    """The default error record; the MCP face passes its own mapper (one place for every failure)."""
    if isinstance(exc, ServingError):
        return exc.to_dict()
    return {"error": type(exc).__name__, "cause": "The job failed unexpectedly.", "next_step": "Report this with the server log.", "detail": ""}


class JobInfo(BaseModel):
    """A handle on long work: poll job_status(taskId, wait_s), stop it with job_cancel."""

    taskId: str
    kind: str
    status: JobStatus
    statusMessage: str = ""
    progress: float = Field(default=0.0, description="0..1")
    createdAt: str
    lastUpdatedAt: str
    pollIntervalMs: int = POLL_INTERVAL_MS
    result: dict[str, Any] | None = Field(default=None, description="The step's result once completed")
    error: dict[str, str] | None = Field(default=None, description="cause and next_step once failed or cancelled")


def new_job_id() -> str:
    """Unguessable (possession of a handle is all it takes), and never flag-like: hex, not url-safe base64, which may start with '-'."""
    return secrets.token_hex(12)


class Job:
    def __init__(self, kind: str, fn: Callable[[Progress], BaseModel], describe: Callable[[BaseException], dict[str, str]],
                 on_change: Callable[[Job], None]) -> None:
        self.id = new_job_id()
        self.kind = kind
        self.progress = Progress()
        self.status: JobStatus = "working"
        self.created_at = self.updated_at = _now()
        self.result: BaseModel | None = None
        self.error: dict[str, str] | None = None
        self.done = threading.Event()
        self._describe, self._on_change = describe, on_change
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"job-{kind}", daemon=True)

    def _run(self, fn: Callable[[Progress], BaseModel]) -> None:
        try:
            self.result = fn(self.progress)
            self.status = "completed"
            self.progress.fraction = 1.0
        except BaseException as exc:  # noqa: BLE001 - a job thread must record every failure, bugs included
            self.status = "cancelled" if isinstance(exc, Cancelled) else "failed"
            self.error = self._describe(exc)
        finally:
            self.updated_at = _now()
            self._on_change(self)  # on disk before anyone can see it finished
            self.done.set()

    def info(self) -> JobInfo:
        message = self.error["cause"] if self.error else self.progress.message
        return JobInfo(
            taskId=self.id, kind=self.kind, status=self.status, statusMessage=message, progress=round(self.progress.fraction, 4),
            createdAt=self.created_at, lastUpdatedAt=self.updated_at if self.done.is_set() else _now(),
            result=self.result.model_dump(mode="json") if self.result is not None else None, error=self.error,
        )


class JobManager:
    """Running jobs in memory, every record on disk (`<state_dir>/jobs/<id>.json`), so handles outlive a restart."""

    def __init__(self, state_dir: Path | None = None, describe: Callable[[BaseException], dict[str, str]] = describe_failure) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._describe = describe
        self._dir = state_dir / "jobs" if state_dir else None
        self._past: dict[str, JobInfo] = self._load() if self._dir else {}

    def _load(self) -> dict[str, JobInfo]:
        assert self._dir is not None
        self._dir.mkdir(parents=True, exist_ok=True)
        past: dict[str, JobInfo] = {}
        for path in sorted(self._dir.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                owner, info = record.pop("ownerPid", None), JobInfo.model_validate(record)
            except (OSError, ValueError):
                continue  # a record we cannot read is no handle anyone can use
            if info.status == "working" and not _alive(owner):  # its server died with it
                info.status, info.lastUpdatedAt = "failed", _now()
                info.error = {"error": "ServerRestarted", "cause": "The server stopped while this job was running; its work was lost.",
                              "next_step": "Start the step again; finished steps are reused.", "detail": ""}
                info.statusMessage = info.error["cause"]
                self._write(info, owner=owner)
            past[info.taskId] = info
        return past

    def _write(self, info: JobInfo, owner: int | None = None) -> None:
        if self._dir is None:
            return
        write_text_atomic(self._dir / f"{info.taskId}.json", json.dumps({**info.model_dump(mode="json"), "ownerPid": owner or os.getpid()}))
        records = sorted(self._dir.glob("*.json"), key=lambda p: p.stat().st_mtime if p.exists() else 0.0)
        for old in records[:-KEEP_JOBS]:
            old.unlink(missing_ok=True)

    def submit(self, kind: str, fn: Callable[[Progress], BaseModel]) -> Job:
        job = Job(kind, fn, self._describe, lambda j: self._write(j.info()))
        with self._lock:
            self._jobs[job.id] = job
        self._write(job.info())
        job._thread.start()
        return job

    def find(self, job_id: str) -> Job | JobInfo:
        with self._lock:
            found: Job | JobInfo | None = self._jobs.get(job_id) or self._past.get(job_id)
        if found is None:
            raise InputError(f"No job has the id {job_id!r}.", "Call job_status without an id to list jobs, or start the step again.")
        return found

    def get(self, job_id: str) -> Job:
        found = self.find(job_id)
        if isinstance(found, JobInfo):
            raise InputError(f"Job {job_id!r} ran in an earlier server and is {found.status}.", "Start the step again to run it.")
        return found

    def info(self, job_id: str) -> JobInfo:
        found = self.find(job_id)
        return found if isinstance(found, JobInfo) else found.info()

    def list(self) -> list[JobInfo]:
        with self._lock:
            jobs = list(self._jobs.values())
            past = [p for p in self._past.values() if p.taskId not in self._jobs]
        return sorted(past + [job.info() for job in jobs], key=lambda i: i.createdAt, reverse=True)

    def cancel(self, job_id: str, wait: float = 10.0) -> JobInfo:
        found = self.find(job_id)
        if isinstance(found, JobInfo):
            return found  # finished in an earlier server: nothing left to stop
        found.progress.cancel()
        found.done.wait(wait)
        return found.info()

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if not job.done.is_set():
                job.progress.cancel()
        for job in jobs:
            job.done.wait(10)
