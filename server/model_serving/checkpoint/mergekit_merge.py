"""Merge several fine-tunes of one base with mergekit (SLERP, TIES, DARE-TIES, linear, task arithmetic).

The merge is written as a mergekit YAML config and run by `mergekit-yaml` in mergekit's own venv, as a child process
of ours (its own process group, killed by cancel and by our death). It writes into a partial folder that takes the
output's name only once mergekit succeeded and the result holds a config.json and weights; the sidecar
`<output>.merge.json` records the config, each input's tree sha256, mergekit's version and the output's tree sha256,
so an identical merge is reused instead of run again. Every refusal comes first (checkpoint/merge_check.py).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from model_serving.checkpoint.merge_check import DENSITY_METHODS, MergeInput, disk_room, method_rules, read_input, resolve_inputs, same_shapes
from model_serving.checkpoint.mergekit_env import MergekitEnvironment, require
from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress, run_process
from model_serving.settings import Settings
from model_serving.util.artifact import Artifact
from model_serving.util.filehash import HashCache
from model_serving.util.paths import confine, partial_path, remove_partials, tree_sha256, write_text_atomic
from model_serving.util.process import native_argv

SEED = 0  # DARE drops parameters at random: a fixed seed makes the same config give the same bytes (and a reuse)
DEFAULT_DENSITY = 0.5
PERCENT = re.compile(r"(\d{1,3})%\|")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": None, "VIRTUAL_ENV": None}


class InputRecord(BaseModel):
    path: str
    role: str = Field(description="base or model")
    sha256: str = Field(description="sha256 over the folder's file names and bytes")
    size_bytes: int


class InputQuality(BaseModel):
    """The merged checkpoint measured against one input, on the built-in quality set (f16 GGUFs of both)."""

    input_path: str
    verdict: str = Field(description="ok, degraded or broken: the merge judged against this input")
    ppl_ratio: float | None = Field(description="merged perplexity / this input's (below 1: the merge scores the text better)")
    ppl_ratio_interval: list[float] | None = None
    input_perplexity: float | None = None
    merged_perplexity: float | None = None
    agreement_rate: float = Field(description="Share of prompts with identical greedy answers")
    summary: str


class MergekitResult(BaseModel):
    output_path: str
    method: str
    models: list[str]
    base: str | None
    dtype: str
    config: str = Field(description="The mergekit YAML the merge ran")
    inputs: list[InputRecord]
    mergekit_version: str | None
    skipped: bool = Field(False, description="An identical earlier merge was reused")
    seconds: float = 0.0
    quality: list[InputQuality] | None = Field(None, description="Against each input; None when not asked (verify off)")
    quality_error: str | None = Field(None, description="Why the measurement could not run, when it could not")
    eval_set: str | None = Field(None, description="The user's EVALS.jsonl the merge was also measured on")
    evals: list[dict[str, Any]] | None = Field(None, description="Against each input on the eval set: per measure, figures, intervals, verdict")


def _params(method: str, weight: float | None, density: float | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if method != "slerp":
        out["weight"] = 1.0 if weight is None else weight
    if method in DENSITY_METHODS:
        out["density"] = DEFAULT_DENSITY if density is None else density
    return out


def _pick(values: list[float] | None, i: int) -> float | None:
    return None if values is None else values[0] if len(values) == 1 else values[i]


def build_config(method: str, models: list[Path], base: Path | None, *, t: float | None, weight: list[float] | None,
                 density: list[float] | None, dtype: str) -> dict[str, Any]:
    """The mergekit config: slerp between base (or the first model) and the other; the rest with per-model parameters."""
    config: dict[str, Any] = {"merge_method": method, "dtype": dtype}
    if method == "slerp":
        first = base or models[0]
        others = [m for m in models if m != first]
        config["base_model"] = str(first)
        config["models"] = [{"model": str(first)}, {"model": str(others[0])}]
        config["parameters"] = {"t": 0.5 if t is None else t}
        return config
    if base is not None:
        config["base_model"] = str(base)
    config["models"] = [{"model": str(m), "parameters": _params(method, _pick(weight, i), _pick(density, i))} for i, m in enumerate(models)]
    return config


def _argv(env: MergekitEnvironment, config: Path, out: Path) -> list[str]:
    assert env.mergekit_yaml is not None
    args = [str(config), str(out), "--random-seed", str(SEED), "--copy-tokenizer"]
    return native_argv(env.mergekit_yaml, *args) or [env.mergekit_yaml, *args]


def run_mergekit(env: MergekitEnvironment, config_text: str, out: Path, progress: Progress) -> None:
    """mergekit-yaml into a partial beside `out`, renamed to `out` only when it wrote a checkpoint."""
    remove_partials(out.parent, out.name)
    tmp = partial_path(out, folder=True)
    config = tmp.with_name(tmp.name + ".yml")
    write_text_atomic(config, config_text)

    def seen(line: str) -> None:
        if (m := PERCENT.search(line)) is not None:
            progress.update(0.05 + 0.55 * min(int(m.group(1)), 100) / 100, f"mergekit: {line.strip()[:100]}")

    try:
        code, tail = run_process(_argv(env, config, tmp), progress, env=OFFLINE, on_line=seen)
        if code != 0 or not (tmp / "config.json").is_file() or not list(tmp.glob("*.safetensors")):
            lines = [x for x in tail.splitlines() if x.strip() and "%|" not in x]
            raise ServingError(f"mergekit failed (exit code {code}); nothing was written to {out}.",
                               "Read mergekit's output below; check the inputs with `model-serving inspect`.", detail="\n".join(lines[-15:]))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        config.unlink(missing_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class MergeSpec:
    """One merge, checked and ready to run: the method, the inputs (read and found to fit), the mergekit YAML it runs."""

    method: str
    models: tuple[Path, ...]  # the fine-tunes, the base left out
    base: Path | None
    dtype: str
    config_text: str
    inputs: tuple[MergeInput, ...]  # the base first, when there is one


def checked_spec(method: str, models: list[Path], base: Path | None, config: dict[str, Any], dtype: str) -> MergeSpec:
    """Read every input (config.json, safetensors headers) and refuse inputs whose architectures or shapes differ."""
    inputs = tuple(read_input(p, "base" if p == base else "model") for p in ([base] if base else []) + models)
    same_shapes(list(inputs))
    return MergeSpec(method=method, models=tuple(models), base=base, dtype=dtype,
                     config_text=yaml.safe_dump(config, sort_keys=False), inputs=inputs)


def merge_artifact(out: Path) -> Artifact:
    """The merged folder and its sidecar `<folder>.merge.json`: config, inputs' tree sha256s, mergekit version."""
    return Artifact(out, suffix=".merge.json", output_key=None, marker="config.json")


def _records(settings: Settings, spec: MergeSpec) -> list[InputRecord]:
    hashes = HashCache(settings.state_dir)
    return [InputRecord(path=str(i.path), role="base" if i.path == spec.base else "model", sha256=tree_sha256(i.path, file_sha=hashes.sha256),
                        size_bytes=i.size_bytes) for i in spec.inputs]


def expected_record(settings: Settings, spec: MergeSpec, env: MergekitEnvironment) -> dict[str, Any]:
    """What a sidecar must record for its merge to be reused: the same config, inputs' bytes and mergekit."""
    return {"config": spec.config_text, "inputs": [r.model_dump() for r in _records(settings, spec)], "mergekit_version": env.version}


def recorded_merge(settings: Settings, out: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar's record when `out` holds this very merge, unchanged since it was written: the one reuse rule."""
    art = merge_artifact(out)
    record = art.recorded(expected)
    if record is None:
        return None
    hashes = HashCache(settings.state_dir)
    return record if record.get("output_tree_sha256") == tree_sha256(art.output, file_sha=hashes.sha256) else None


def merge_models(settings: Settings, models: list[str], base: str | None, output: str | None, *, method: str, t: float | None = None,
                 weight: list[float] | None = None, density: list[float] | None = None, dtype: str = "bfloat16",
                 overwrite: bool = False, progress: Progress | None = None) -> MergekitResult:
    """Refuse what cannot work, then merge with mergekit (or reuse an identical earlier merge); quality is measured by the caller."""
    paths, base_path = resolve_inputs(settings.roots, models, base)
    method_rules(method, len(paths) + (1 if base_path else 0), base_path is not None, t, weight, density)
    config = build_config(method, paths, base_path, t=t, weight=weight, density=density, dtype=dtype)
    spec = checked_spec(method, paths, base_path, config, dtype)
    default_out = (base_path or paths[0]).parent / f"merged-{method}"
    out = confine(output or str(default_out), settings.roots, must_exist=False, what="output folder")
    return run_merge(settings, spec, out, overwrite=overwrite, progress=progress)


def run_merge(settings: Settings, spec: MergeSpec, out: Path, *, overwrite: bool = False, progress: Progress | None = None) -> MergekitResult:
    """Merge `spec` into `out` with mergekit, or reuse `out` when its sidecar records this very merge."""
    progress = progress or Progress()
    start = time.monotonic()
    art = merge_artifact(out)
    if not art.present():
        disk_room(out, list(spec.inputs))
    env = require(settings)
    progress.update(0.01, "hashing the inputs")
    expected = expected_record(settings, spec, env)
    result = MergekitResult(output_path=str(out), method=spec.method, models=[str(p) for p in spec.models],
                            base=str(spec.base) if spec.base else None, dtype=spec.dtype, config=spec.config_text,
                            inputs=[InputRecord(**r) for r in expected["inputs"]], mergekit_version=env.version)
    if recorded_merge(settings, out, expected) is not None:
        progress.update(0.6, f"reusing {out.name}: the same inputs, config and mergekit")
        return result.model_copy(update={"skipped": True, "seconds": time.monotonic() - start})
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists and was not made by this merge.", "Pass --replace to replace it, or choose another -o.")
    progress.update(0.05, f"mergekit {spec.method} of {len(spec.inputs)} checkpoints")
    art.sidecar.unlink(missing_ok=True)  # never a sidecar beside an output it does not describe
    run_mergekit(env, spec.config_text, out, progress)
    art.record({**expected, "method": spec.method, "output_tree_sha256": tree_sha256(out, file_sha=HashCache(settings.state_dir).sha256)})
    progress.update(0.6, f"merged into {out}")
    return result.model_copy(update={"seconds": time.monotonic() - start})
