"""Test data for quantization: an F16 GGUF of SmolLM2-135M, made once per test session.

The only real model here ships as Q4_1. Dequantizing it with `llama_model_quantize` (file type
MOSTLY_F16, allow_requantize) gives a genuine F16 GGUF of the same model to quantize from.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def dequantize_to_f16(source: Path, target: Path) -> Path:
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    params.nthread = 2
    partial = target.with_name(target.name + ".partial")
    assert llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params) == 0
    os.replace(partial, target)
    return target


@pytest.fixture(scope="session")
def f16_source(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared, read-only F16 file; tests link it under their own tmp_path (the allowed root)."""
    target = tmp_path_factory.getbasetemp() / "smollm2-f16" / "SmolLM2-135M-Instruct-f16.gguf"
    if not target.exists():  # both test modules import this fixture; the file is made once
        target.parent.mkdir(parents=True, exist_ok=True)
        dequantize_to_f16(smollm2_gguf, target)
    return target


def write_unloadable_gguf(path: Path) -> Path:
    """A well-formed F16 GGUF for an architecture llama.cpp has no loader for."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(path, "alienarch")
    writer.add_file_type(1)
    writer.add_tensor("blk.0.weight", np.zeros((32, 32), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def place(source: Path, directory: Path, name: str | None = None) -> Path:
    """A hard link (cheap, and not a symlink, so path confinement sees it inside `directory`)."""
    target = directory / (name or source.name)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def cancel_on_message(run, prefix: str, *, wait_s: float = 180, join_s: float = 60) -> BaseException | None:  # noqa: ANN001
    """Run `run(progress)` in a thread, cancel it when a progress message starts with `prefix`; return what it raised."""
    import threading

    from model_serving.jobs import Progress

    seen = threading.Event()
    progress = Progress(lambda fraction, message: seen.set() if message.startswith(prefix) else None)
    outcome: dict[str, BaseException] = {}

    def work() -> None:
        try:
            run(progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    assert seen.wait(wait_s), f"no progress message starting with {prefix!r}"
    progress.cancel()
    worker.join(join_s)
    assert not worker.is_alive(), "the cancelled work is still running"
    return outcome.get("error")
