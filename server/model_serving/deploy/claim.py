"""One deploy per name at a time: a claim held from the plan to the manifest.

Two deploys of one name would both pass the plan's "name is free" check, then start two engines and
race on one record. The claim is an flock on `state/deploys/<name>.lock`, taken right after the plan
knows the name and before any long work: the second deploy is refused at once, naming the first.
The kernel drops the lock with its holder, so a killed deploy never leaves a claim that blocks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from model_serving.errors import InputError
from model_serving.settings import Settings


def claim_path(settings: Settings, name: str) -> Path:
    return settings.state_dir / "deploys" / f"{name}.lock"


@contextlib.contextmanager
def deploy_claim(settings: Settings, name: str, source: str) -> Iterator[Path]:
    """Hold the deploy claim on `name` for the block; refuse with the holder's pid and source when another deploy has it."""
    path = claim_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock(path, name)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "source": source, "since": time.time()}).encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still locked: a waiting opener then sees another inode and retries
        os.close(fd)


def _lock(path: Path, name: str) -> int:
    """An fd on `path` holding its exclusive lock, refused at once if another process (or thread) holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise _refusal(name, holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder released and removed it between our open and our lock: claim the new file


def _holder(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _refusal(name: str, holder: dict[str, object]) -> InputError:
    who = f" (pid {holder['pid']}" + (f", deploying {holder['source']}" if holder.get("source") else "") + ")" if holder.get("pid") else ""
    since = holder.get("since")
    ago = f", started {time.time() - since:.0f} s ago" if isinstance(since, int | float) else ""
    return InputError(f"Another deploy of {name!r} is running{who}{ago}; two deploys of one name would start two engines.",
                      f"Wait for it to finish (then `model-serving serve list` shows {name!r}), or deploy under another name (--name).")


def deploy_running(settings: Settings, name: str) -> InputError | None:
    """The refusal a deploy of `name` would get now (for a plan, which claims nothing), or None when no deploy holds it."""
    path = claim_path(settings, name)
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _refusal(name, _holder(fd))
    finally:
        os.close(fd)
    return None
