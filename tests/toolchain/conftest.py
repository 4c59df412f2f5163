"""The pinned llama-cpp-python sdist for the toolchain tests: the one the install kept, else downloaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_serving.toolchain import patching, source
from model_serving.toolchain.patching import BuildFailed
from model_serving.toolchain.recipe import SDIST_NAME, patches


def sdist_dir() -> Path:
    """Where scripts/install.sh keeps the pinned sdist."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "model-serving" / "sdist"


@pytest.fixture(scope="session")
def pinned_sdist() -> Path:
    kept = sdist_dir() / SDIST_NAME
    try:
        return source.verified(kept) if kept.is_file() else source.fetch(sdist_dir())
    except BuildFailed as exc:  # only when PyPI cannot be reached and the install kept no copy
        pytest.skip(f"the pinned sdist is not available: {exc}")


@pytest.fixture(scope="session")
def pinned_files(pinned_sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the patches touch, as the pinned sdist has them (read from the archive once per session)."""
    names = sorted({name for p in patches() for name in patching.touched(p)})
    return source.extract(pinned_sdist, names, tmp_path_factory.mktemp("pinned-llama.cpp"))
