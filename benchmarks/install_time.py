"""The first install, timed as a whole process from an empty cache: `scripts/install.sh` in a fresh clone and a fresh venv.

Empty means: a new clone of this commit, a new `.venv`, and new model-serving caches (the compiled llama.cpp, the kept
sdist, the state directory) under a temporary XDG_CACHE_HOME. pip's own cache is the machine's (named in the result):
the target is the install's own work, mostly the one llama.cpp compile, not the network; `--empty-pip-cache` empties it
too, so every wheel is downloaded again (written to install_time.empty-pip-cache.json unless --out says otherwise). The result also carries
the compile's own seconds from the fresh build's build.json, and the load around the run (a busy machine is not
comparable). Run it on a quiet machine; it takes minutes.

    python benchmarks/install_time.py [--extras ""] [--empty-pip-cache] [--keep] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for extra in ("server", "benchmarks"):
    sys.path.insert(0, str(ROOT / extra))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402

BENCH = ROOT / "benchmarks"


def pip_cache() -> str:
    done = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or str(Path.home() / ".cache" / "pip")


def install_env(work: Path, extras: str, empty_pip_cache: bool) -> dict[str, str]:
    """The install's environment: every model-serving cache under `work`, pip's cache kept (or empty), no vLLM environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_SERVING_", "VIRTUAL_ENV", "CMAKE_ARGS", "LLAMA_CPP_LIB_PATH"))}
    env.update(XDG_CACHE_HOME=str(work / "cache"),
               PIP_CACHE_DIR=str(work / "pip-cache") if empty_pip_cache else pip_cache(), MODEL_SERVING_HOME=str(work / "home"),
               MODEL_SERVING_VLLM_INSTALL="0", EXTRAS=extras, PATH=os.environ.get("PATH", "/usr/bin:/bin"))
    return env


def fresh_build(work: Path) -> dict | None:
    """The build.json the install wrote into its fresh cache (revision, patches, compile seconds), or None."""
    for manifest in (work / "cache" / "model-serving" / "llama.cpp").glob("*/build.json"):
        return json.loads(manifest.read_text(encoding="utf-8"))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="", help="EXTRAS for scripts/install.sh (the README's install: none)")
    parser.add_argument("--empty-pip-cache", action="store_true", help="pip's cache empty too: every wheel downloaded again")
    parser.add_argument("--keep", action="store_true", help="keep the clone, venv and caches (printed) for a look")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.out is None:
        empty, kept = BENCH / "results" / "install_time.empty-pip-cache.json", BENCH / "results" / "install_time.json"
        args.out = empty if args.empty_pip_cache else kept
    work = Path(tempfile.mkdtemp(prefix="install-time."))
    log = work / "install.log"
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "repo")], check=True)
        with LoadWatch("install") as watch, log.open("wb") as out:
            began = time.monotonic()
            done = subprocess.run(["bash", "scripts/install.sh"], cwd=work / "repo", env=install_env(work, args.extras, args.empty_pip_cache),
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
            seconds = time.monotonic() - began
        build = fresh_build(work)
        report = {"benchmark": "install_time", "what": "scripts/install.sh from a fresh clone, venv and model-serving caches",
                  "extras": args.extras, "pip_cache": "empty" if args.empty_pip_cache else "kept (the machine's)", "exit_code": done.returncode,
                  "seconds": round(seconds, 1), "minutes": round(seconds / 60, 2), "compile_seconds": (build or {}).get("compile_seconds"),
                  "log_tail": log.read_text(errors="replace").strip().splitlines()[-5:] if done.returncode else []}
        engine = {"kind": "native" if build else "none", "describe": "the build this install compiled", "build": build,
                  "patches": (build or {}).get("patches")}
        write_report(args.out, report, [watch], model="none (the install serves nothing)",
                     workload=workload("scripts/install.sh from an empty model-serving cache", prompts="none", extras=args.extras), engine=engine)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
