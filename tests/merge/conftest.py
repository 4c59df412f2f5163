"""mergekit fixtures: test-time fine-tunes of the tiny random base, and mergekit's venv (installed by scripts/install.sh).

The slow tests skip only where mergekit could not be installed; the reason its install recorded is the skip reason, and
the end of the run prints it, so a skipped mergekit path is never silent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from checkpoints import perturbed_checkpoint

from model_serving.checkpoint import mergekit_env
from model_serving.checkpoint.mergekit_env import MergekitEnvironment
from model_serving.settings import Settings

_SEEN: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "status" in _SEEN:
        terminalreporter.write_line(f"mergekit tests: {_SEEN['status']}")


@pytest.fixture(scope="session")
def installed_mergekit() -> MergekitEnvironment:
    """mergekit's venv in the default state directory (where scripts/install.sh put it), before any test moves the home."""
    found = mergekit_env.find(Settings.from_env())
    if not found.installed:
        _SEEN["status"] = f"skipped: {found.error} ({found.next_step})"
        pytest.skip(f"mergekit is not installed here: {found.error}. {found.next_step}")
    _SEEN["status"] = f"mergekit {found.version} in {found.python}"
    return found


@pytest.fixture
def mergekit(settings: Settings, installed_mergekit: MergekitEnvironment) -> MergekitEnvironment:
    """The installed mergekit, recorded in this test's own state directory."""
    return mergekit_env.save(settings, installed_mergekit)


@pytest.fixture(scope="session")
def tune_a(artifacts: Path, tiny_checkpoint: Path) -> Path:
    """A "fine-tune" that moved only layer 0."""
    return perturbed_checkpoint(tiny_checkpoint, artifacts / "tune-a", layers=(0,), seed=11)


@pytest.fixture(scope="session")
def tune_b(artifacts: Path, tiny_checkpoint: Path) -> Path:
    """A "fine-tune" that moved only layer 1."""
    return perturbed_checkpoint(tiny_checkpoint, artifacts / "tune-b", layers=(1,), seed=12)


@pytest.fixture(scope="session")
def tune_c(artifacts: Path, tiny_checkpoint: Path) -> Path:
    """A "fine-tune" that moved both layers."""
    return perturbed_checkpoint(tiny_checkpoint, artifacts / "tune-c", layers=(0, 1), seed=13)


@pytest.fixture(scope="session")
def wired_tunes(artifacts: Path, smollm2_gguf: Path) -> tuple[Path, Path]:
    """Two test-time fine-tunes of a tiny base that answers and stops (the zoo's wired Llama 3), each moving one layer."""
    from zoo import BY_NAME, build

    base = build(BY_NAME["llama3"], artifacts / "zoo-llama3-merge-base", smollm2_gguf)
    return (perturbed_checkpoint(base, artifacts / "zoo-llama3-tune-a", layers=(0,), seed=31, scale=0.002),
            perturbed_checkpoint(base, artifacts / "zoo-llama3-tune-b", layers=(1,), seed=32, scale=0.002))
