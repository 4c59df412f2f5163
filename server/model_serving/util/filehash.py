"""sha256 of large files without extra passes: the one stat-keyed cache, and the one hash taken in the background.

Export, quantize and the Ollama registration record the sha256 of every GGUF they read or write.
Reading a 270 MB file again only to hash it costs more than the tools' own margin, so a file is
hashed in a thread beside the work that reads or writes it (`BackgroundHash`: a finished input
beside the quantizer, or an output following the converter as it grows), and the digest goes into
the state directory's cache (`HashCache`), where the next step that reads that file finds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_serving.errors import InputError, ServingError
from model_serving.util.paths import sha256_file, write_text_atomic

_CHUNK = 1 << 22
_HEAD = 1 << 20  # re-read at the end: a writer that seeks back rewrites its header, never the middle
_POLL_S = 0.02
_SMALL = 1 << 20


class HashCache:
    """sha256 by (size, mtime, inode) in the state directory, so a file written or read once is not read again to hash it.

    It trusts a file's stat the way make and git do: content rewritten in place with the same size
    within the same nanosecond would be missed.
    """

    _KEEP = 256

    def __init__(self, state_dir: Path) -> None:
        self.file = state_dir / "sha256-cache.json"

    def _entries(self) -> dict[str, dict[str, Any]]:
        try:
            entries = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    @staticmethod
    def _stamp(path: Path) -> list[int]:
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns, stat.st_ino]

    def get(self, path: Path) -> str | None:
        entry = self._entries().get(str(path))
        if isinstance(entry, dict) and entry.get("stat") == self._stamp(path) and isinstance(entry.get("sha256"), str):
            return str(entry["sha256"])
        return None

    def put(self, path: Path, sha: str) -> None:
        entries = self._entries()
        entries.pop(str(path), None)
        entries[str(path)] = {"stat": self._stamp(path), "sha256": sha}
        self.file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.file, json.dumps(dict(list(entries.items())[-self._KEEP:])))

    def sha256(self, path: Path, on_read: Callable[[int, int], None] | None = None) -> str:
        """The file's sha256, from the cache when its stat is unchanged; `on_read(done, total)` follows a read."""
        size = path.stat().st_size
        if size < _SMALL:
            return sha256_file(path)  # cheaper to read than to record
        sha = self.get(path)
        if sha is None:
            sha = _read_sha256(path, on_read)
            self.put(path, sha)
        return sha


def _read_sha256(path: Path, on_read: Callable[[int, int], None] | None) -> str:
    if on_read is None:
        return sha256_file(path)
    digest, done, total = hashlib.sha256(), 0, path.stat().st_size
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            on_read(done, total)
    return digest.hexdigest()


class BackgroundHash:
    """The sha256 of one file, read in a thread while the caller works on it (hashlib releases the GIL).

    A finished file (`growing=False`, e.g. the quantizer's input) is read once and, with a `cache`,
    looked up there first and recorded there after. A file another process is still writing
    (`growing=True`, e.g. the converter's output) is followed as it grows: sound for a writer that
    writes front to back (llama.cpp's GGUFWriter), since data below the size is final. `result()`
    once that writer exited checks what it could still have changed (the same inode, the size
    hashed, the first MiB as it was read) and hashes the whole file again if anything differs, so the
    digest is always the file's. `cancel` stops the read early (then `result()` says so).
    """

    def __init__(self, path: Path, *, cache: HashCache | None = None, cancel: threading.Event | None = None, growing: bool = False) -> None:
        self.path, self.cache, self.growing = path, cache, growing
        self._cancel, self._stop = cancel or threading.Event(), threading.Event()
        self._digest, self._head = hashlib.sha256(), bytearray()
        self._offset, self._broken = 0, False
        self._inode: int | None = None
        self._error: OSError | None = None
        self._done = threading.Event()
        self.sha = cache.get(path) if cache is not None and not growing and path.is_file() else None
        self._thread = threading.Thread(target=self._run, name="hash-background", daemon=True)
        if self.sha is None:
            self._thread.start()

    def _run(self) -> None:
        while self.growing and not self.path.exists():
            if self._done.wait(_POLL_S):
                return
        try:
            with self.path.open("rb") as fh:
                self._inode = os.fstat(fh.fileno()).st_ino
                self._follow(fh)
        except OSError as exc:
            self._broken, self._error = True, exc

    def _follow(self, fh: Any) -> None:
        while True:
            last = self._done.is_set() or not self.growing  # a growing file is read once more after its writer exited
            while chunk := fh.read(_CHUNK):
                if self._cancel.is_set() or self._stop.is_set():
                    return
                self._take(chunk)
            if os.fstat(fh.fileno()).st_size < self._offset:
                self._broken = True  # truncated under us: start over in result()
            if last or self._broken:
                if not self.growing and not self._broken:
                    self.sha = self._digest.hexdigest()
                    if self.cache is not None:
                        self.cache.put(self.path, self.sha)
                return
            self._done.wait(_POLL_S)

    def _take(self, chunk: bytes) -> None:
        if len(self._head) < _HEAD:
            self._head += chunk[: _HEAD - len(self._head)]
        self._digest.update(chunk)
        self._offset += len(chunk)

    def result(self) -> str:
        """The digest of the file as it is now (a growing file's writer must have exited)."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.sha is not None:
            return self.sha
        if self._cancel.is_set() or self._stop.is_set():
            raise ServingError(f"Hashing {self.path.name} did not finish.", "Run the step again.")
        if not self.growing and self._error is not None:
            raise InputError(f"Could not read {self.path}: {self._error}.", "Check the file's permissions.")
        if self._broken or not self._unchanged():
            return sha256_file(self.path)
        return self._digest.hexdigest()

    def _unchanged(self) -> bool:
        stat = self.path.stat()
        if stat.st_ino != self._inode or stat.st_size != self._offset:
            return False
        with self.path.open("rb") as fh:
            return fh.read(len(self._head)) == self._head

    def stop(self) -> None:
        """Stop reading without a digest (the work failed or was cancelled)."""
        self._stop.set()
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
