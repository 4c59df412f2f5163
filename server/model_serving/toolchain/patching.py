"""Apply the patch files to a llama.cpp source tree with `patch`, all of them or none.

The whole series is first applied to a scratch copy of the files it touches (a dry run that also holds
when two patches change one file); only when every patch applies there is the real tree changed. A patch
that does not apply (the source moved, or the change is already there) fails the build with the patch's
name and `patch`'s own report: a build without one of its patches is not the build that was tested.
Hunks must match exactly (`--fuzz=0`); only their line numbers may move.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from model_serving.errors import ServingError
from model_serving.toolchain.recipe import Patch

PATCH_TIMEOUT_S = 60.0
_TARGET = re.compile(r"^\+\+\+ b/(\S+)", re.MULTILINE)


class BuildFailed(ServingError):
    """The llama.cpp build could not be made: a patch, the compiler, the source or the CPU."""


def touched(patch: Patch) -> list[str]:
    """The source files a patch changes, relative to llama.cpp's root."""
    return _TARGET.findall(patch.path.read_text(encoding="utf-8"))


def _patch(tree: Path, patch: Patch, *, dry_run: bool = False) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("patch")
    if tool is None:
        raise BuildFailed("GNU patch is not installed, and the llama.cpp patches are applied with it.",
                          "Install it (apt-get install patch), then rerun scripts/install.sh.")
    # --forward: a change already there is an error, not a reversal; --batch: never ask; no .orig or .rej left behind
    argv = [tool, "-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "--reject-file=-", "-i", str(patch.path)]
    return subprocess.run([*argv, *(["--dry-run"] if dry_run else [])], cwd=tree, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=PATCH_TIMEOUT_S, check=False)


def _refuse(tree: Path, patch: Patch, done: subprocess.CompletedProcess[str]) -> BuildFailed:
    return BuildFailed(f"The llama.cpp patch {patch.name} does not apply to {tree}.",
                       "The pinned source and the patch disagree: update the patch for this llama.cpp revision "
                       "(server/model_serving/toolchain/patches/), or pin the llama-cpp-python it was written for.",
                       detail=(done.stdout + done.stderr).strip()[-2000:])


def dry_run(tree: Path, patch: Patch) -> None:
    """`patch --dry-run` of one patch against `tree` as it is; BuildFailed says why it does not apply."""
    done = _patch(tree, patch, dry_run=True)
    if done.returncode != 0:
        raise _refuse(tree, patch, done)


def check(tree: Path, patch_set: Sequence[Patch]) -> None:
    """Apply the series to a scratch copy of the files it touches; BuildFailed names the first patch that fails."""
    with tempfile.TemporaryDirectory(prefix="llama.cpp-patch-check.") as tmp:
        scratch = Path(tmp)
        for name in {name for patch in patch_set for name in touched(patch)}:
            if (tree / name).is_file():  # a missing file stays missing: patch then says so
                (scratch / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(tree / name, scratch / name)
        for patch in patch_set:
            done = _patch(scratch, patch)
            if done.returncode != 0:
                raise _refuse(tree, patch, done)


def apply(tree: Path, patch_set: Sequence[Patch]) -> None:
    """Apply every patch to `tree` once the whole series applied to a scratch copy: all of them or none."""
    check(tree, patch_set)
    for patch in patch_set:
        done = _patch(tree, patch)
        if done.returncode != 0:  # the scratch run passed, so only the file system can say no here
            raise BuildFailed(f"The llama.cpp patch {patch.name} applied to a copy but not to {tree}.",
                              "Check the disk (space, permissions), then rerun scripts/install.sh.",
                              detail=(done.stdout + done.stderr).strip()[-2000:])
