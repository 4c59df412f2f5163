"""Path confinement, argv guards, all-or-nothing file writes, and cleaning up after writers that were killed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from model_serving.errors import InputError, PathNotAllowed
from model_serving.util.process import start_time

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


def tree_sha256(directory: Path, names: Sequence[str] | None = None, file_sha: Callable[[Path], str] = sha256_file) -> str:
    """A content hash of a checkpoint directory (relative names and bytes), for resumable steps; `file_sha` may be a cache's."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file()) if names is None else [directory / n for n in sorted(names)]
    for file in files:
        if not file.exists():
            continue
        digest.update(file.relative_to(directory).as_posix().encode())
        digest.update(b"\x00")
        digest.update(file_sha(file).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- partial files
#
# A partial is `.<final name>.<pid>-<start>.<random>.partial`: the writer's pid and its start time
# (so a recycled pid is not taken for the writer). It is stale once that process is gone; then the
# next write of the same output, or `clean`, removes it. A live writer's partial is never touched.

_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<start>\d+)\.[^.]+\.partial$")
SIDECAR_SUFFIXES = (".export.json", ".json")  # `<output>.json` (quantize), `<output>.export.json` (export)


def _owner_tag() -> str:
    return f"{os.getpid()}-{start_time(os.getpid()) or 0}"


def partial_path(final: Path, *, folder: bool = False) -> Path:
    """A fresh, empty partial (a file, or a folder with `folder`) beside `final`, tagged with this process as its writer.

    Unique per writer (pid, start time, random part), so two writers of one output never share one.
    """
    prefix, suffix = f".{final.name}.{_owner_tag()}.", ".partial"
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=final.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=final.parent)
    os.close(fd)
    return Path(name)


def partial_state(path: Path) -> str:
    """'stale' (its writer is gone), 'live' (its writer runs) or 'unknown' (no writer recorded)."""
    match = _PARTIAL.match(path.name)
    if not match:
        return "unknown"
    start = start_time(int(match["pid"]))
    return "live" if start is not None and start in (0, int(match["start"])) else "stale"


def remove_partials(directory: Path, name: str | None = None) -> list[Path]:
    """Remove the stale partials in `directory` (of the output `name` only, when given)."""
    removed = []
    for leftover in directory.glob(".*.partial"):
        match = _PARTIAL.match(leftover.name)
        if match and (name is None or match["name"] == name) and partial_state(leftover) == "stale" and _unlink(leftover):
            removed.append(leftover)
    return removed


def write_text_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write a small file (a sidecar, a record) whole or not at all."""
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` whole or not at all, through a partial unique to this writer that `clean` recognises.

    `mode` replaces mkstemp's 0600: a record or cache other users read must stay readable. A partial of the same file
    that a killed writer left is removed once this one is in place: state files are rewritten often and never `clean`ed.
    """
    tmp = partial_path(path)
    try:
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    remove_partials(path.parent, path.name)


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a fresh partial folder beside `final`; it replaces `final` only if the block succeeds, else it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_partials(final.parent, final.name)
    tmp = partial_path(final, folder=True)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_output(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.

    On any exception (cancellation included) the temporary file is removed, so a half-written
    artifact never carries the final name; a process killed outright leaves it to `remove_partials`.
    """
    if final.exists() and not overwrite:
        raise InputError(f"{final} already exists.", "Pass replace (--replace) to replace it, or choose another output path.")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_partials(final.parent, final.name)  # what an earlier, killed run of this step left
    tmp = partial_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# ---------------------------------------------------------------- clean


class CleanResult(BaseModel):
    """What `clean` removed (or, with plan, would remove) and what it left because a live process owns it."""

    directory: str
    planned: bool = Field(description="True when nothing was removed: the list is what clean would remove")
    removed: list[str] = Field(description="Stale partial files and sidecars whose output is gone")
    kept: list[str] = Field(description="Partials a live process is writing, or with no writer recorded")
    summary: str


def _orphaned_sidecar(path: Path) -> bool:
    """`<output>.json` / `<output>.export.json` recording an `output_path` that no longer exists."""
    suffix = next((s for s in SIDECAR_SUFFIXES if path.name.endswith(s)), None)
    output = path.with_name(path.name[: -len(suffix)]) if suffix else None
    if output is None or not output.name.endswith(".gguf") or output.exists():
        return False
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("output_path")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(recorded, str) and Path(recorded).name == output.name


def clean(directory: str | os.PathLike[str], roots: Sequence[Path], *, plan: bool = False) -> CleanResult:
    """Remove stale partials and orphaned sidecars under `directory` (inside the roots); never a live writer's file."""
    top = confine(directory, roots, what="directory")
    if not top.is_dir():
        raise InputError(f"{top} is not a directory.", "Pass the folder to clean, e.g. the one holding your GGUF files.")
    removed, kept = [], []
    for folder, dirs, names in os.walk(top):  # symlinked folders are not followed: nothing outside is touched
        dirs[:] = [d for d in dirs if not d.startswith((".git", ".venv"))]
        partial_dirs = [d for d in dirs if d.startswith(".") and d.endswith(".partial")]
        dirs[:] = [d for d in dirs if d not in partial_dirs]  # a partial folder is judged whole, never walked into
        for name in [*partial_dirs, *names]:
            path = Path(folder) / name
            if path.is_symlink() or not (path.is_file() or name in partial_dirs):
                continue
            if name.endswith(".partial") and name.startswith("."):
                state = partial_state(path)
            elif name.endswith(".json") and _orphaned_sidecar(path):
                state = "stale"
            else:
                continue
            if state != "stale":
                kept.append(f"{path} ({'a live process is writing it' if state == 'live' else 'no writer recorded'})")
            elif plan or _unlink(path):
                removed.append(str(path))
    verb = "would remove" if plan else "removed"
    summary = f"{verb} {len(removed)} file(s) under {top}" + (f"; kept {len(kept)}" if kept else "")
    return CleanResult(directory=str(top), planned=plan, removed=removed, kept=kept, summary=summary)


def _unlink(path: Path) -> bool:
    """Remove a file, or a partial folder and what it holds."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        return False
    return True
