"""sha256 of large files without extra passes: a stat-keyed cache, and a hash that follows a file as it is written.

Export and quantize record the sha256 of every GGUF they read or write. Reading a 270 MB file again
only to hash it costs more than the tools' own margin, so export hashes its output while the
converter writes it (`FollowingHash`), and the digest goes into the state directory's cache
(`HashCache`), where the quantizer that reads that file next finds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

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

    def sha256(self, path: Path) -> str:
        if path.stat().st_size < _SMALL:
            return sha256_file(path)  # cheaper to read than to record
        sha = self.get(path)
        if sha is None:
            sha = sha256_file(path)
            self.put(path, sha)
        return sha


class FollowingHash:
    """The sha256 of a file another process is writing, read in a thread as it grows; `finish()` once the writer exited.

    Sound for a writer that writes its file once, front to back (llama.cpp's GGUFWriter): data below
    the file's size is final. `finish()` checks what such a writer could still have changed (the
    same inode, the size hashed, the first MiB as it was read) and hashes the whole file again if
    anything differs, so the digest is always the file's.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._digest, self._head = hashlib.sha256(), bytearray()
        self._offset, self._broken = 0, False
        self._inode: int | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="hash-following", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self.path.exists():
            if self._done.wait(_POLL_S):
                return
        try:
            with self.path.open("rb") as fh:
                self._inode = os.fstat(fh.fileno()).st_ino
                while True:
                    last = self._done.is_set()  # read once more after the writer exited
                    while chunk := fh.read(_CHUNK):
                        self._take(chunk)
                    if os.fstat(fh.fileno()).st_size < self._offset:
                        self._broken = True  # truncated under us: start over in finish()
                    if last or self._broken:
                        return
                    self._done.wait(_POLL_S)
        except OSError:
            self._broken = True

    def _take(self, chunk: bytes) -> None:
        if len(self._head) < _HEAD:
            self._head += chunk[: _HEAD - len(self._head)]
        self._digest.update(chunk)
        self._offset += len(chunk)

    def finish(self) -> str:
        """The digest of the file as it is now (the writer must have exited)."""
        self._done.set()
        self._thread.join()
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
        """Stop following without a digest (the write failed or was cancelled)."""
        self._done.set()
        self._thread.join()
