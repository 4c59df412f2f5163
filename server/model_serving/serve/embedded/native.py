"""The natively compiled llama.cpp server: built at install time, found at start time.

The xllamacpp wheel is portable, so it runs llama.cpp's kernels for a baseline CPU; compiled here with
`GGML_NATIVE=ON` the same llama.cpp revision (the one vendored by the pinned llama-cpp-python, so the
converter, the quantizer and the server agree) served about twice the requests per second. AMX stays
off: VMs that advertise it but do not grant the tile state kill its kernels with SIGILL.

The build is cached under `Settings.native_cache/<key>/`, the key made of the llama-cpp-python version,
a hash of this CPU's flags and of the build options, so a rerun of the install reuses it and another
CPU (a copied home) never runs code compiled for the wrong one. `find` decides which build an engine
start uses and says why; `MODEL_SERVING_ENGINE_BUILD=native|xllamacpp` forces one.

    python -m model_serving.serve.embedded.native build SDIST_OR_SOURCE_DIR   # exit 1 with the reason if it fails
    python -m model_serving.serve.embedded.native find
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from model_serving.errors import InputError
from model_serving.settings import Settings
from model_serving.util.process import openmp_env

TARGETS = ("llama-server", "llama-bench", "llama-imatrix", "llama-quantize")
# The dropped connections: llama-server's stream provider returns `has_next` (false) after `sink.done()`, and
# cpp-httplib takes a false return as a cancelled write, so it closes every connection after a stream although
# its headers promised keep-alive; a client that reuses the connection sends into a closing socket and loses
# that request. Returning true after done() ends the body the same way and keeps the connection.
STREAM_PATCH = ("tools/server/server-http.cpp", "            return has_next;\n        };",
                "            return true;  // done() ended the body; false would read as cancelled and close the connection\n        };")
# llamafile's tinyBLAS kernels take every quantized matrix product of 2 or more rows, and for a few rows they are
# slower than ggml's own dot products: on a 2-core Zen 5, Q8_0 at 2 tokens ran 119-138 tok/s through tinyBLAS
# against 159-167 without, 4 tokens 179-199 against 247-258 (llama-bench), while from 8 rows on they are even and
# from 16 faster. Continuous batching decodes 2-4 sequences per step, exactly those sizes: serving 16-token answers at
# concurrency 4 rose from 7.8-8.0 to 9.6-10.5 req/s. So tinyBLAS keeps the prompts and ggml takes the small batches.
SMALL_BATCH = "ggml_is_quantized(src0->type) && ne11 < 8"
SMALL_BATCH_PATCHES = (
    ("ggml/src/ggml-cpu/ggml-cpu.c", "    const bool src1_cont = ggml_is_contiguous(src1);\n\n    if (src1_cont) {",
     f"    const bool src1_cont = ggml_is_contiguous(src1);\n    const bool small_batch = {SMALL_BATCH};  // see model_serving native.py\n\n"
     "    if (src1_cont && !small_batch) {"),
    ("ggml/src/ggml-cpu/ggml-cpu.c", "#if GGML_USE_LLAMAFILE\n    if (src1->type != vec_dot_type) {",
     "#if GGML_USE_LLAMAFILE\n    if (src1->type != vec_dot_type && !small_batch) {"),
)
PATCHES = (STREAM_PATCH, *SMALL_BATCH_PATCHES)
# cpp-httplib closes a kept-alive connection after 100 requests, or after 5 s idle: the 5 s equals httpx's
# (the openai client's) pool expiry and is below aiohttp's 15 s, so a client could send on a connection the
# server was closing at that moment and lose the request. Idle connections now stay 30 s (longer than
# either client keeps them; each holds an HTTP thread) and the request count per connection is unbounded.
KEEPALIVE_DEFINES = ("-DCPPHTTPLIB_KEEPALIVE_MAX_COUNT=1000000", "-DCPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND=30")
NO_AMX = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_CCACHE=OFF",
)
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")  # the ones that pick llama.cpp's kernels
VERIFY_TIMEOUT_S = 30.0
# Beyond the worker's settings: the best of benchmarks/engine_capacity.py's grid on this 2-core machine.
TUNING: tuple[str, ...] = ()
BuildKind = Literal["native", "xllamacpp"]
env = openmp_env  # the native server's OpenMP settings: the same as every llama.cpp child's (util/process.py says why)


@dataclass(frozen=True)
class Build:
    """The engine build an engine start uses, and the one-line reason shown in the registry and in `status`."""

    kind: BuildKind
    server: Path | None
    describe: str


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def llama_cpp_revision() -> str:
    """The llama.cpp revision is the one vendored by the installed llama-cpp-python release."""
    try:
        return f"llama-cpp-python-{version('llama-cpp-python')}"
    except PackageNotFoundError:
        return "unknown"


def cache_key(revision: str | None = None, flags: list[str] | None = None) -> str:
    recipe = json.dumps([flags if flags is not None else cpu_flags(), CMAKE_OPTIONS, NO_AMX, KEEPALIVE_DEFINES, TARGETS, PATCHES])
    return f"{revision or llama_cpp_revision()}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def build_dir(settings: Settings) -> Path:
    return settings.native_cache / cache_key()


def _shown_flags() -> str:
    present = set(cpu_flags())
    return " ".join(f for f in SHOWN_FLAGS if f in present) or "no AVX2"


def _xllamacpp(reason: str) -> Build:
    try:
        wheel = f"xllamacpp {version('xllamacpp')}"
    except PackageNotFoundError:
        wheel = "xllamacpp (not installed)"
    return Build("xllamacpp", None, f"{wheel} ({reason})")


def _native_build(settings: Settings) -> Build | str:
    """The cached build for this CPU and revision, or why there is none."""
    folder = build_dir(settings)
    manifest = folder / "build.json"
    server = folder / "llama-server"
    if not manifest.is_file() or not os.access(server, os.X_OK):
        return f"native build not found in {folder}: scripts/install.sh compiles it"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError:
        return f"native build manifest {manifest} is unreadable: rerun scripts/install.sh"
    commit = meta.get("version", "").rpartition("commit ")[2].rstrip(")") if "commit " in meta.get("version", "") else ""
    at = f"llama.cpp {commit} of" if commit else "llama.cpp of"
    return Build("native", server, f"native ({at} {meta.get('revision', '?')}, {meta.get('cpu', _shown_flags())})")


def find(settings: Settings) -> Build:
    """The build an engine start uses: native when cached (or forced), else the xllamacpp wheel."""
    choice = settings.engine_build
    if choice not in ("auto", "native", "xllamacpp"):
        raise InputError(f"MODEL_SERVING_ENGINE_BUILD={choice!r} is not a build.", "Use auto, native or xllamacpp.")
    if choice == "xllamacpp":
        return _xllamacpp("chosen by MODEL_SERVING_ENGINE_BUILD")
    found = _native_build(settings)
    if isinstance(found, Build):
        return found
    if choice == "native":
        raise InputError(f"MODEL_SERVING_ENGINE_BUILD=native, but the {found}.", "Run scripts/install.sh, or unset MODEL_SERVING_ENGINE_BUILD.")
    return _xllamacpp(found)


def server_argv(build: Build, model: Path, *, alias: str, port: int, ctx_size: int, parallel: int, threads: int,
                tuning: tuple[str, ...] = TUNING) -> list[str]:
    """llama-server's argv with the xllamacpp worker's settings (loopback, alias, slots, continuous batching, metrics)."""
    assert build.server is not None
    return [str(build.server), "--model", str(model), "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(ctx_size), "--parallel", str(parallel), "--threads", str(threads), "--threads-batch", str(threads),
            "--cont-batching", "--metrics", "--slots", "--jinja", "--no-webui", *tuning]


def tool(settings: Settings, name: str) -> Path | None:
    """Another binary of the native build (llama-bench, llama-imatrix), or None when there is no build."""
    path = build_dir(settings) / name
    return path if (build_dir(settings) / "build.json").is_file() and os.access(path, os.X_OK) else None


def _source(source: Path, work: Path) -> Path:
    """A copy of llama.cpp's source tree (we patch it): from a folder, or vendor/llama.cpp of the llama-cpp-python sdist."""
    if source.is_dir():
        return Path(shutil.copytree(source, work / "src", ignore=shutil.ignore_patterns(".git", "build*")))
    with tarfile.open(source) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
        tar.extractall(work / "src", members=members, filter="data")
    found = sorted((work / "src").glob("*/vendor/llama.cpp/CMakeLists.txt"))
    if not found:
        raise RuntimeError(f"{source} holds no vendor/llama.cpp")
    return found[0].parent


def apply_patch(source: Path, patch: tuple[str, str, str]) -> bool:
    """Apply one (file, old, new) patch to a llama.cpp tree; False when this revision's code differs (then nothing changes)."""
    path, old, new = patch
    file = source / path
    if not file.is_file():
        return False
    text = file.read_text(encoding="utf-8")
    if new in text:
        return True
    if text.count(old) != 1:
        return False
    file.write_text(text.replace(old, new), encoding="utf-8")
    return True


def patch_stream_close(source: Path) -> bool:
    return apply_patch(source, STREAM_PATCH)


def patch_small_batch(source: Path) -> bool:
    """Both halves of SMALL_BATCH_PATCHES, or neither (half would leave `small_batch` undeclared or unused)."""
    file = source / SMALL_BATCH_PATCHES[0][0]
    before = file.read_text(encoding="utf-8") if file.is_file() else None
    if all(apply_patch(source, patch) for patch in SMALL_BATCH_PATCHES):
        return True
    if before is not None:
        file.write_text(before, encoding="utf-8")
    return False


def _run(argv: list[str], log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"{Path(argv[0]).name} {argv[1]} exited with {done.returncode}:\n" + "\n".join(tail))


def _verify(server: Path) -> str:
    """Run the built server once: a CPU that traps its instructions fails here, not at the first serve."""
    done = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the built llama-server does not run on this CPU (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else ""


def build(settings: Settings, source: Path, *, jobs: int | None = None) -> Path:
    """Compile the targets into the cache (reusing a finished build); RuntimeError says why one failed."""
    target = build_dir(settings)
    if isinstance(_native_build(settings), Build):
        return target
    if not (shutil.which("cmake") and shutil.which("ninja")):
        raise RuntimeError("cmake and ninja are needed (apt-get install cmake ninja-build, or pip install cmake ninja)")
    settings.native_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=settings.native_cache) as tmp:
        work = Path(tmp)
        log = settings.native_cache / f"{target.name}.log"
        log.write_text("", encoding="utf-8")
        flags = " ".join(NO_AMX + KEEPALIVE_DEFINES)
        tree = _source(source, work)
        if not patch_stream_close(tree):
            print("llama.cpp's stream code differs from the patch: connections still close after each stream", file=sys.stderr)
        if not patch_small_batch(tree):
            print("llama.cpp's matrix-product code differs from the patch: small batches stay on tinyBLAS", file=sys.stderr)
        _run(["cmake", "-S", str(tree), "-B", str(work / "build"), "-G", "Ninja", *CMAKE_OPTIONS,
              f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"], log)
        _run(["cmake", "--build", str(work / "build"), "--target", *TARGETS, "-j", str(jobs or os.cpu_count() or 2)], log)
        install(work / "build" / "bin", target)
    return target


def install(bin_dir: Path, target: Path) -> None:
    """Copy the built binaries into the cache folder, verified and with their manifest, whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name in TARGETS:
            shutil.copy2(bin_dir / name, staged / name)
        meta = {"revision": llama_cpp_revision(), "cpu": _shown_flags(), "version": _verify(staged / "llama-server"),
                "cmake": [*CMAKE_OPTIONS, *NO_AMX, *KEEPALIVE_DEFINES]}
        (staged / "build.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)  # an earlier copy without a manifest
        os.replace(staged, target)  # find() never sees half a build
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    settings = Settings.from_env()
    if args[:1] == ["find"]:
        found = find(settings)
        print(found.describe)
        return 0 if found.kind == "native" else 1
    if len(args) != 2 or args[0] != "build":
        print("usage: native.py build SDIST_OR_SOURCE_DIR | find", file=sys.stderr)
        return 2
    try:
        print(build(settings, Path(args[1])))
    except (RuntimeError, OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
        print(f"native llama.cpp build failed, the xllamacpp wheel stays the engine: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
