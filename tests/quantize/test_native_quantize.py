"""Quantize with the native build's `llama-quantize` as the child, and the worker as the fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from quant_helpers import cancel_on_message, place

from model_serving.errors import Cancelled
from model_serving.quantize.quantizer import QUANT_TYPES, quantize_gguf, read_header
from model_serving.settings import Settings
from model_serving.toolchain import tool
from model_serving.util.paths import sha256_file
from model_serving.util.process import native_argv

# The build the install made for this machine (scripts/install.sh), not the test's fresh home; or a
# llama-quantize compiled from the same llama.cpp source by hand (MODEL_SERVING_TEST_LLAMA_QUANTIZE).
_OVERRIDE = os.environ.get("MODEL_SERVING_TEST_LLAMA_QUANTIZE")
LLAMA_QUANTIZE = Path(_OVERRIDE) if _OVERRIDE else tool(Settings.from_env(), "llama-quantize")
needs_native = pytest.mark.skipif(LLAMA_QUANTIZE is None or native_argv("x") is None,
                                  reason="no native llama.cpp build with llama-quantize (scripts/install.sh), or no setpriv")


@pytest.fixture
def f16(f16_source: Path, tmp_path: Path) -> Path:  # noqa: F811
    return place(f16_source, tmp_path)


def test_without_a_native_quantizer_the_worker_runs(settings: Settings, f16: Path) -> None:
    result = quantize_gguf(settings, f16, None, "Q8_0", verify=False, threads=2)
    assert result.quantizer == "worker"
    assert read_header(Path(result.output_path)).file_type == QUANT_TYPES["Q8_0"].ftype


def test_without_setpriv_the_worker_runs(settings: Settings, f16: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A binary that would fail if it ran: the fallback must not try it when the parent-death rule cannot be armed.
    fake = tmp_path / "llama-quantize"
    fake.write_text("#!/bin/sh\nexit 9\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert native_argv(fake) is None
    result = quantize_gguf(settings, f16, None, "Q8_0", verify=False, threads=2, quantizer=fake)
    assert result.quantizer == "worker"


@needs_native
def test_native_llama_quantize_writes_the_same_model(settings: Settings, f16: Path) -> None:
    ours = quantize_gguf(settings, f16, f16.with_name("native-Q8_0.gguf"), "Q8_0", verify=False, threads=2, quantizer=LLAMA_QUANTIZE)
    worker = quantize_gguf(settings, f16, f16.with_name("worker-Q8_0.gguf"), "Q8_0", verify=False, threads=2)
    assert ours.quantizer == "llama-quantize" and worker.quantizer == "worker"
    native_header, worker_header = read_header(Path(ours.output_path)), read_header(Path(worker.output_path))
    assert native_header.file_type == QUANT_TYPES["Q8_0"].ftype
    assert native_header.tensor_types == worker_header.tensor_types
    assert ours.output_sha256 == sha256_file(Path(ours.output_path))
    assert abs(ours.output_size_bytes - worker.output_size_bytes) < 1 << 16  # the same tensors; only metadata may differ


@needs_native
def test_cancelling_native_llama_quantize_leaves_nothing(settings: Settings, f16: Path) -> None:
    target = f16.with_name("cancelled-Q4_K_M.gguf")
    error = cancel_on_message(lambda progress: quantize_gguf(settings, f16, target, "Q4_K_M", verify=False, threads=1,
                                                             quantizer=LLAMA_QUANTIZE, progress=progress), "Quantizing tensor")
    assert isinstance(error, Cancelled)
    assert sorted(p.name for p in f16.parent.iterdir() if p.name.startswith("cancelled")) == []


PARENT = """
import sys
from model_serving.util.process import spawn
proc = spawn(sys.argv[1:], stdout=None, stderr=None)
print(proc.pid, flush=True)
proc.wait()
"""


@pytest.mark.skipif(native_argv("x") is None, reason="no setpriv (util-linux)")
def test_a_native_child_dies_with_its_parent() -> None:
    """kill -9 of the process that started a compiled binary through native_argv: the kernel kills the binary too."""
    import signal
    import subprocess
    import sys
    import time

    argv = native_argv("/bin/sleep", "600")
    assert argv is not None
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *argv], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}/exe").resolve().name != "sleep" and time.monotonic() < deadline:
        time.sleep(0.05)  # setpriv has armed the signal once it has exec'd the binary
    assert Path(f"/proc/{child}/exe").resolve().name == "sleep"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    while Path(f"/proc/{child}").exists() and _state(child) not in ("Z", "X") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or _state(child) in ("Z", "X"), "the native child outlived its parent"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "X"
