"""Path confinement, argv guards and all-or-nothing file writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from model_serving.errors import InputError, PathNotAllowed

_CHUNK = 1 << 20


def confine(path: str | os.PathLike[str], roots: Sequence[Path], *, must_exist: bool = True, what: str = "path") -> Path:
    """Resolve `path` (following symlinks) and refuse it unless it lies inside one of `roots`.

    Resolving first means a symlink inside a root that points outside is refused too.
    """
    raw = os.fspath(path)
    if "\x00" in raw:
        raise PathNotAllowed(f"The {what} contains a NUL byte.", "Pass a plain file path.")
    refuse_flag(raw, what)
    candidate = Path(raw).expanduser()
    resolved = candidate.resolve(strict=False)
    for root in roots:
        root = root.resolve()
        if resolved == root or resolved.is_relative_to(root):
            break
    else:
        shown = ", ".join(str(r) for r in roots)
        raise PathNotAllowed(
            f"The {what} {raw} resolves to {resolved}, outside the allowed roots ({shown}).",
            "Move the file under an allowed root, or start the server with --root <dir> / MODEL_SERVING_ROOTS.",
        )
    if must_exist and not resolved.exists():
        raise InputError(f"The {what} {raw} does not exist.", "Check the spelling, or run `model-serving inspect` on its folder.")
    return resolved


def refuse_flag(value: str, what: str = "value") -> str:
    """Values that reach a subprocess argv must not be read as options."""
    if value.startswith("-"):
        raise InputError(f"The {what} {value!r} starts with '-', which a tool would read as an option.", "Rename it or prefix it with ./")
    return value


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(directory: Path, names: Sequence[str] | None = None) -> str:
    """A content hash of a checkpoint directory (relative names and bytes), for resumable steps."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file()) if names is None else [directory / n for n in sorted(names)]
    for file in files:
        if not file.exists():
            continue
        digest.update(file.relative_to(directory).as_posix().encode())
        digest.update(b"\x00")
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_output(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.

    On any exception (cancellation included) the temporary file is removed, so a half-written
    artifact never carries the final name.
    """
    if final.exists() and not overwrite:
        raise InputError(f"{final} already exists.", "Pass --overwrite to replace it, or choose another output path.")
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_partials(directory: Path) -> list[Path]:
    """Remove `.partial` files left by a process that was killed outright."""
    removed = []
    for leftover in directory.glob(".*.partial"):
        with contextlib.suppress(OSError):
            leftover.unlink()
            removed.append(leftover)
    return removed
