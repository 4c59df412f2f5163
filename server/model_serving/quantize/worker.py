"""Child process that runs `llama_model_quantize` once: `python -P .../quantize_worker.py ...`.

It lives apart from `quantize.py` so that it imports nothing but llama-cpp-python's ctypes binding:
the parent has already validated everything, and each import here is paid on every quantization
(the benchmark holds us to within 5% of calling the binding directly). A crash in llama.cpp kills
only this process, and cancelling the job kills it without touching the caller.

argv: INPUT OUTPUT FTYPE_NAME FTYPE_VALUE NTHREAD ALLOW_REQUANTIZE(0|1)
Output: llama.cpp's own log on stderr (its "[ i/ n]" lines drive the progress bar), then one
`QUANTIZE_DONE` line on stdout; any failure exits non-zero with a `QUANTIZE_ERROR ...` line.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def die_with_parent() -> None:
    """Arm the parent-death signal (util/launch.py), loaded by path: importing the package would cost its metadata lookup."""
    spec = importlib.util.spec_from_file_location("_model_serving_launch", Path(__file__).parents[1] / "util" / "launch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.die_with_parent()


def load_binding() -> types.ModuleType:
    """Import `llama_cpp.llama_cpp` without running the package `__init__`.

    The package `__init__` also imports the high-level `Llama` class, numpy and jinja2, which cost
    about 0.2 s here and are not needed to quantize. Only this short-lived child does this; the
    parent imports llama_cpp normally.
    """
    if "llama_cpp" not in sys.modules:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("llama-cpp-python is not installed")
        package = types.ModuleType("llama_cpp")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["llama_cpp"] = package
    from llama_cpp import llama_cpp as binding

    return binding


def main(argv: list[str]) -> int:
    die_with_parent()  # a killed parent (kill -9 of the CLI) must not leave us writing on
    if len(argv) != 6:
        print("QUANTIZE_ERROR usage: INPUT OUTPUT FTYPE_NAME FTYPE_VALUE NTHREAD ALLOW_REQUANTIZE", flush=True)
        return 2
    source, target, ftype_name, ftype_value, nthread, allow = argv
    binding = load_binding()
    attr = "LLAMA_FTYPE_ALL_F32" if ftype_name == "F32" else f"LLAMA_FTYPE_MOSTLY_{ftype_name}"
    bound = getattr(binding, attr, None)
    if bound is None or int(bound) != int(ftype_value):
        print(f"QUANTIZE_ERROR the installed llama-cpp-python does not offer {ftype_name} (as file type {ftype_value})", flush=True)
        return 3
    binding.llama_backend_init()
    params = binding.llama_model_quantize_default_params()
    params.ftype = int(ftype_value)
    params.nthread = int(nthread)
    params.allow_requantize = allow == "1"
    rc = binding.llama_model_quantize(source.encode(), target.encode(), params)
    if rc != 0:
        print(f"QUANTIZE_ERROR llama_model_quantize returned {rc}", flush=True)
        return 4
    print("QUANTIZE_DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
