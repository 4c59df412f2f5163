"""What every benchmark writes beside its numbers, so a result says what was measured, on what, and whether it compares.

Every script in benchmarks/ writes its result through `write_report` (or merges `run_metadata`), which records:

- the commit, and whether the worktree had uncommitted changes (`dirty`);
- the engine build (the native build, or kind `none` and why there is none) with its `build.json`, its patches included;
- the model and quantization, and the workload (profile, input/output tokens, ignore_eos, unique or repeated
  prompts), both stated by the script;
- the machine (CPU model, cores, platform) and each measurement's quiet samples.

Each measurement runs inside a `LoadWatch`, which applies the one quiet-machine rule
(`model_serving.bench.quiet`): other processes used less than 0.2 cores just before and during it, the
benchmark's own process tree (this process, its children, the engines named in `pids`) left out. A result
with any loud measurement is `comparable: false`, with the measured other-load, and is never a baseline.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from model_serving.bench import quiet

ROOT = Path(__file__).resolve().parent.parent
CPUS = os.cpu_count() or 1
Prompts = Literal["unique", "repeated", "from a file", "none"]


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


class LoadWatch(quiet.QuietWatch):
    """The quiet rule's samples around one measurement, with the load average beside them (for the reader only)."""

    def __enter__(self) -> LoadWatch:
        self.load_before = load_average()
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.load_after = load_average()

    @property
    def busy(self) -> bool:
        return not self.quiet

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "load_avg_1m": [round(getattr(self, "load_before", 0.0), 2), round(getattr(self, "load_after", 0.0), 2)]}


def workload(profile: str, *, prompts: Prompts, input_tokens: int | None = None, output_tokens: int | None = None,
             ignore_eos: bool | None = None, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    """The workload a result measured: every script states it, even when it sends no prompts (`prompts="none"`)."""
    return {"profile": profile, "prompts": prompts, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "ignore_eos": ignore_eos, **extra}


def prompts_of(source: str) -> Prompts:
    return "repeated" if source in ("fixed", "text") else "from a file" if source == "jsonl" else "unique"


def deploy_workload(profile: str) -> dict[str, Any]:
    """The workload of a deploy's own bench step: the bench's defaults, read from `BenchConfig` rather than restated."""
    from model_serving.bench.schema import BenchConfig

    fields = BenchConfig.model_fields
    source = str(fields["prompt_source"].default)
    return workload(profile, prompts=prompts_of(source), prompt_source=source, output_tokens=None,
                    ignore_eos=fields["ignore_eos"].default if "ignore_eos" in fields else None)


def bench_workload(config: Any, profile: str | None = None, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    """The workload of a run of our bench, read from its `BenchConfig`: prompts are repeated unless the source makes them unique."""
    source = str(config.prompt_source)
    prompts = prompts_of(source)
    return workload(profile or f"bench prompt_source={source}", prompts=prompts, input_tokens=getattr(config, "input_tokens", None),
                    output_tokens=config.max_tokens, ignore_eos=getattr(config, "ignore_eos", None), **extra)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _native_module():  # noqa: ANN202
    # the build code is moving out of serve/ into its own package; whichever holds it answers
    import importlib

    for name in ("model_serving.toolchain.native", "model_serving.toolchain", "model_serving.serve.embedded.native"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "find"):
            return module
    return None


def engine_build() -> dict[str, Any]:
    """The engine build an engine start would use now, with the native build's manifest (its `patches` when it lists them)."""
    from model_serving.settings import Settings

    native = _native_module()
    if native is None:
        return {"kind": "unknown", "describe": "the build lookup was not found in the package"}
    found = native.find(Settings.from_env())
    out: dict[str, Any] = {"kind": found.kind, "describe": found.describe}
    if found.server is not None and (manifest := Path(found.server).parent / "build.json").is_file():
        try:
            out["build"] = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            out["build"] = {"error": f"{manifest} is unreadable"}
        out["patches"] = out["build"].get("patches")  # None: a build from before the manifest listed them
    return out


def run_metadata(watches: Sequence[LoadWatch | dict[str, Any]], *, model: str, workload: dict[str, Any], engine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance and the quiet verdict of one result; `engine` overrides the build found now (a script that forces one)."""
    from model_serving import __version__

    loads = [w if isinstance(w, dict) else w.as_dict() for w in watches]  # dicts: samples a library call took itself
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "version": __version__,
        "engine": engine if engine is not None else engine_build(),
        "model": model,
        "workload": workload,
        "machine": {"cpu_model": _cpu_model(), "cpus": CPUS, "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # 1, 5 and 15 min, as the run ends
        "quiet_rule": quiet.RULE,
        "load": loads,
        **quiet.verdict(loads),
    }


def write_report(path: Path, report: dict[str, Any], watches: Sequence[LoadWatch | dict[str, Any]], *, model: str, workload: dict[str, Any],
                 engine: dict[str, Any] | None = None, echo: bool = True) -> dict[str, Any]:
    """The script's figures with `run_metadata`, written as JSON (and printed unless `echo` is off)."""
    meta = run_metadata(watches, model=model, workload=workload, engine=engine)
    if "load_average" in report:  # a script that sampled it itself (formats.py) keeps its own
        meta.pop("load_average")
    report = {**report, **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    if echo:
        print(json.dumps(report, indent=2))
    return report
