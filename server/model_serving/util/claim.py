"""One claim primitive: an exclusive flock on a file that says who holds it, for names that one writer at a time may own.

The kernel drops an flock with its holder, however it exits, so a claim whose owner died is free again at once. The
holder writes who it is into the file right after it wins the lock; a loser that reads the file in that instant waits a
moment for it, so a refusal can name the winner. The holder removes the file while it still holds the lock, and an
opener that won a lock on a removed file retries on the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOLDER_WAIT_S = 1.0  # how long a loser waits for the winner to write who it is


class Claimed(Exception):
    """Another holder has the claim; `holder` is what it wrote (pid, since, and its own fields), or {} if it wrote nothing yet."""

    def __init__(self, holder: dict[str, Any]) -> None:
        super().__init__(f"claimed by {holder or 'a holder still starting'}")
        self.holder = holder


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _holder(fd: int) -> dict[str, Any]:
    deadline = time.monotonic() + HOLDER_WAIT_S
    while not (found := _read(fd)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


def _lock(path: Path, *, wait: bool) -> int:
    """An fd on `path` holding its exclusive lock; raises Claimed when another holds it and not `wait`."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise Claimed(holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def hold(path: Path, *, wait: bool = False, **fields: Any) -> Iterator[None]:  # noqa: ANN401
    """Hold the claim on `path` for the block, recording pid, thread, since and `fields`; Claimed if another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock(path, wait=wait)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "thread": threading.get_ident(), "since": time.time(), **fields}).encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still locked: a waiter on this inode sees it gone and retries on a fresh file
        os.close(fd)


def holder(path: Path) -> dict[str, Any] | None:
    """Who holds the claim on `path` now, without claiming it; None when nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)
    return None


def since_text(holder: dict[str, Any]) -> str:
    """'since 12:34:56 UTC' from a holder's record, or '' when it wrote no time."""
    since = holder.get("since")
    return f"since {time.strftime('%H:%M:%S UTC', time.gmtime(since))}" if isinstance(since, int | float) else ""
