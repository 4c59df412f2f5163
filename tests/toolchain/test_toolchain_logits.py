"""The patched engine computes what upstream computes: logits on fixed prompts against an unpatched build's.

Of the patches only 0002 (small batches off tinyBLAS) changes arithmetic, and only in libggml-cpu; 0001 changes
the server's HTTP handling. So the unpatched engine is the installed build with libggml-cpu recompiled from the
pinned source without the patches (the same options, one library: minutes, hence slow). Both run through the
binding (`logits_all`) in their own interpreter, on SmolLM2 at Q8_0 (the type the patch was measured on, which
tinyBLAS handles; Q4_1 it does not) made by the build's llama-quantize, decoding the prompts 1 and 4 tokens per
step: 4 rows is where the two builds may take different kernels.

Tolerance: the kernels sum in different orders (both quantize the activations to Q8_1 first), so logits may
differ in the last bits but no more: every logit within 0.05 of the unpatched build's, the same top token
wherever the unpatched build's top two are more than 0.1 apart, and identical at batch 1 (the same kernel).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_serving.settings import Settings
from model_serving.toolchain import build, lookup, source
from model_serving.toolchain.recipe import LIBRARY_GLOB

pytestmark = pytest.mark.slow
PROMPTS = ("The capital of France is", "def fibonacci(n):\n    if n < 2:\n        return n\n", "Once upon a time, in a small village by the sea,")
LOGIT_TOLERANCE = 0.05
UNPATCHED_OVERRIDE = "MODEL_SERVING_TEST_UNPATCHED_GGML_CPU"
TOP_GAP = 0.1
_RUN = """
import json, sys, numpy as np
from llama_cpp import Llama
model, batch, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
llm = Llama(model_path=model, n_ctx=256, n_batch=batch, n_ubatch=batch, logits_all=True, n_threads=2, verbose=False)
rows = []
for prompt in json.loads(sys.argv[4]):
    llm.reset()
    tokens = llm.tokenize(prompt.encode())
    llm.eval(tokens)
    rows.append(np.array(llm.scores[: len(tokens)], dtype=np.float32))
np.save(out, np.concatenate(rows))
"""


def _engine(tmp: Path, name: str, libraries: Path, replace: Path | None = None) -> Path:
    """A copy of the binding's Python code whose lib/ holds `libraries` (libggml-cpu from `replace`, when given)."""
    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.submodule_search_locations
    package = shutil.copytree(next(iter(spec.submodule_search_locations)), tmp / name / "llama_cpp", ignore=shutil.ignore_patterns("lib", "__pycache__"))
    lib = Path(package) / "lib"
    lib.mkdir()
    for path in libraries.glob(LIBRARY_GLOB):
        if replace is None or not path.name.startswith("libggml-cpu.so"):
            shutil.copy2(path, lib / path.name, follow_symlinks=False)
    for path in (replace.glob("libggml-cpu.so*") if replace else ()):
        shutil.copy2(path, lib / path.name, follow_symlinks=False)
    return tmp / name


def _logits(engine: Path, gguf: Path, batch: int, out: Path) -> np.ndarray:
    env = {"PYTHONPATH": str(engine), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    subprocess.run([sys.executable, "-c", _RUN, str(gguf), str(batch), str(out), json.dumps(PROMPTS)], env=env, check=True, timeout=600)
    return np.load(out)


@pytest.fixture(scope="module")
def unpatched_ggml_cpu(pinned_sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get(UNPATCHED_OVERRIDE):  # a folder holding an unpatched libggml-cpu of this recipe, compiled earlier
        return Path(os.environ[UNPATCHED_OVERRIDE])
    work = tmp_path_factory.mktemp("unpatched")
    tree = source.unpack(pinned_sdist, work)  # no patches applied
    return build.compile_tree(tree, work / "build", work / "build.log", targets=("ggml-cpu",))


def test_the_patched_engine_matches_upstream_at_batch_1_and_4(unpatched_ggml_cpu: Path, f16_source: Path, tmp_path: Path) -> None:
    found = lookup.installed(Settings())
    if not isinstance(found, lookup.NativeBuild):
        pytest.skip(f"needs the install's llama.cpp build: {found}")
    q8 = tmp_path / "smollm2-q8_0.gguf"
    subprocess.run([str(found.folder / "llama-quantize"), str(f16_source), str(q8), "Q8_0", "2"], capture_output=True, check=True, timeout=600)
    patched = _engine(tmp_path, "patched", found.folder)
    upstream = _engine(tmp_path, "upstream", found.folder, replace=unpatched_ggml_cpu)
    for batch in (1, 4):
        ours, theirs = (_logits(e, q8, batch, tmp_path / f"{e.name}-{batch}.npy") for e in (patched, upstream))
        assert ours.shape == theirs.shape and ours.shape[0] >= 15
        difference = float(np.abs(ours - theirs).max())
        top2 = np.sort(theirs, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > TOP_GAP
        assert difference <= (0.0 if batch == 1 else LOGIT_TOLERANCE), f"batch {batch}: max |logit difference| {difference}"
        assert (ours.argmax(axis=1) == theirs.argmax(axis=1))[clear].all(), f"batch {batch}: a clear top token changed"
