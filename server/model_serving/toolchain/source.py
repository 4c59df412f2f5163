"""The pinned llama.cpp source: fetched once (sha256-checked), unpacked from the llama-cpp-python sdist.

The sdist carries llama.cpp as `vendor/llama.cpp` and the submodule's git directory, whose HEAD names the
exact llama.cpp commit; both are read from the archive, never from the network at build time.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from model_serving.toolchain.patching import BuildFailed
from model_serving.toolchain.recipe import LLAMA_CPP_PYTHON_PIN, SDIST_NAME, SDIST_SHA256

VENDOR = "/vendor/llama.cpp/"
SUBMODULE_HEAD = "/.git/modules/vendor/llama.cpp/HEAD"
DOWNLOAD_TIMEOUT_S = 900.0


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified(sdist: Path) -> Path:
    """`sdist` when it is the pinned archive byte for byte; BuildFailed otherwise."""
    if not sdist.is_file():
        raise BuildFailed(f"The llama-cpp-python sdist {sdist} does not exist.", "Rerun scripts/install.sh; it downloads it.")
    found = sha256(sdist)
    if found != SDIST_SHA256:
        raise BuildFailed(f"{sdist} has sha256 {found}, not the pinned {SDIST_SHA256}.",
                          "Delete it and rerun scripts/install.sh (a new pin needs a new hash in toolchain/recipe.py).")
    return sdist


def fetch(folder: Path) -> Path:
    """The pinned sdist in `folder`: reused when it is already there and checks out, else downloaded by pip."""
    target = folder / SDIST_NAME
    if target.is_file() and sha256(target) == SDIST_SHA256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:",
            "-d", str(folder), f"llama-cpp-python=={LLAMA_CPP_PYTHON_PIN}"]
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=DOWNLOAD_TIMEOUT_S, check=False)
    if done.returncode != 0 or not target.is_file():
        raise BuildFailed(f"pip could not download llama-cpp-python {LLAMA_CPP_PYTHON_PIN}'s sdist.",
                          "Check that PyPI is reachable (or put the file in the folder yourself), then rerun scripts/install.sh.",
                          detail=done.stderr.strip()[-1500:])
    return verified(target)


def commit(sdist: Path) -> str | None:
    """The llama.cpp commit the sdist vendors, from the submodule's HEAD inside the archive."""
    try:
        with tarfile.open(sdist) as tar:
            head = next((m for m in tar.getmembers() if m.name.endswith(SUBMODULE_HEAD)), None)
            data = tar.extractfile(head) if head is not None else None
            text = data.read().decode("ascii", "replace").strip() if data is not None else ""
    except (OSError, tarfile.TarError):
        return None
    return text if len(text) == 40 and all(c in "0123456789abcdef" for c in text) else None


def unpack(source: Path, work: Path) -> Path:
    """A writable llama.cpp tree in `work` (we patch it): from a source folder, or vendor/llama.cpp of the sdist."""
    if source.is_dir():
        return Path(shutil.copytree(source, work / "src", ignore=shutil.ignore_patterns(".git", "build*")))
    try:
        with tarfile.open(source) as tar:
            # the submodule's `.git` file points outside the tree; without it nothing mistakes the copy for a checkout
            members = [m for m in tar.getmembers() if VENDOR in m.name and not m.name.endswith(VENDOR + ".git")]
            tar.extractall(work / "src", members=members, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise BuildFailed(f"{source} could not be unpacked: {exc}.", "Delete it and rerun scripts/install.sh.") from exc
    found = sorted((work / "src").glob("*/vendor/llama.cpp/CMakeLists.txt"))
    if not found:
        raise BuildFailed(f"{source} holds no vendor/llama.cpp.", "Pass the llama-cpp-python sdist, or a llama.cpp source folder.")
    return found[0].parent


def extract(sdist: Path, names: list[str], work: Path) -> Path:
    """Only `names` (relative to llama.cpp's root) from the sdist's vendor/llama.cpp, as a tree in `work`."""
    wanted = set(names)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            head, sep, rest = member.name.partition(VENDOR)
            if sep and "/" not in head and rest in wanted:
                member.name = rest
                tar.extract(member, work, filter="data")
    return work
