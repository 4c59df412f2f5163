"""Child process that runs `llama_model_quantize` once: `python -P .../quantize_worker.py ...`.

It lives apart from `quantize.py` so that it imports nothing but llama-cpp-python's ctypes binding:
the parent has already validated everything, and each import here is paid on every quantization
(the benchmark holds us to within 5% of calling the binding directly). A crash in llama.cpp kills
only this process, and cancelling the job kills it without touching the caller.

argv: INPUT OUTPUT FTYPE_NAME FTYPE_VALUE NTHREAD ALLOW_REQUANTIZE(0|1)
Output: llama.cpp's own log on stderr (its "[ i/ n]" lines drive the progress bar), then one
message of the child protocol (util/child.py) on stdout: `result` when the file is written, or
`error` with a cause and a next step, and a non-zero exit.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def _by_path(name: str) -> types.ModuleType:
    """A stdlib-only module of util/ loaded by path: importing the package would cost its metadata lookup."""
    spec = importlib.util.spec_from_file_location(f"_model_serving_{name}", Path(__file__).parents[1] / "util" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass resolves its annotations through its module
    spec.loader.exec_module(module)
    return module


def die_with_parent() -> None:
    """Arm the parent-death signal (util/launch.py)."""
    _by_path("launch").die_with_parent()


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
    emit = _by_path("child").emit
    if len(argv) != 6:
        emit("error", cause=f"the quantize worker takes 6 arguments, not {len(argv)}", next_step="Run it through `model-serving quantize`.")
        return 2
    source, target, ftype_name, ftype_value, nthread, allow = argv
    binding = load_binding()
    attr = "LLAMA_FTYPE_ALL_F32" if ftype_name == "F32" else f"LLAMA_FTYPE_MOSTLY_{ftype_name}"
    bound = getattr(binding, attr, None)
    if bound is None or int(bound) != int(ftype_value):
        emit("error", cause=f"the installed llama-cpp-python does not offer {ftype_name} (as file type {ftype_value})",
             next_step="Choose another type, or reinstall with scripts/install.sh so the binding and the native tools match.")
        return 3
    binding.llama_backend_init()
    params = binding.llama_model_quantize_default_params()
    params.ftype = int(ftype_value)
    params.nthread = int(nthread)
    params.allow_requantize = allow == "1"
    rc = binding.llama_model_quantize(source.encode(), target.encode(), params)
    if rc != 0:
        emit("error", cause=f"llama_model_quantize returned {rc}",
             next_step="Check that the input loads (`model-serving inspect`) and that there is disk space.")
        return 4
    emit("result", output=target, ftype=int(ftype_value))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
