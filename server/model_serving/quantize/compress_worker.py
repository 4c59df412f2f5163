"""One llm-compressor one-shot run: `LLMC_PYTHON -P compress_worker.py SPEC_JSON`, in llm-compressor's own environment.

It imports nothing of model_serving (that environment does not have it) except util/child.py and util/launch.py by
path. It dies with its parent, loads the checkpoint on the CPU, cuts the calibration text into token windows, applies
the recipe the spec names, and saves a compressed-tensors checkpoint (with the source's tokenizer files) into the
folder the parent gave, which is a partial the parent renames once it has checked it. One JSON line on stdout says
`result` (tool versions, what the recipe applied) or `error` (cause and next step).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "util"))
if TYPE_CHECKING:  # the type checker reads them as the package modules they are; llm-compressor's environment loads them by path
    from model_serving.util.child import emit
    from model_serving.util.launch import die_with_parent
else:
    from child import emit
    from launch import die_with_parent

# Files a compressed checkpoint needs from its source that save_pretrained does not write.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "generation_config.json")


def _weights(bits: int, group_size: int | None, *, symmetric: bool = True) -> dict[str, Any]:
    strategy = {"strategy": "group", "group_size": group_size} if group_size else {"strategy": "channel"}
    return {"num_bits": bits, "type": "int", "symmetric": symmetric, **strategy}


def _groups(weights: dict[str, Any], activations: dict[str, Any] | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"targets": ["Linear"], "weights": weights}
    if activations is not None:
        group["input_activations"] = activations
    return {"group_0": group}


def recipe(spec: dict[str, Any]) -> list[Any]:
    """The modifiers for the spec's format (bits and group size as the parent chose them)."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier  # type: ignore[import-not-found]

    fmt, bits, group, ignore = spec["format"], spec["bits"], spec["group_size"], ["lm_head"]
    if fmt == "fp8":
        return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=ignore)]
    if fmt == "rtn":  # round-to-nearest, no calibration: the parent uses it only to show the gate refusing a bad recipe
        return [QuantizationModifier(config_groups=_groups(_weights(bits, group)), ignore=ignore)]
    if fmt == "gptq":
        return [GPTQModifier(config_groups=_groups(_weights(bits, group)), ignore=ignore)]
    if fmt == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier  # type: ignore[import-not-found]

        return [AWQModifier(duo_scaling="both"), QuantizationModifier(config_groups=_groups(_weights(bits, group, symmetric=False)), ignore=ignore)]
    if fmt == "w8a8-int8":
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier  # type: ignore[import-not-found]

        tokens = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True}
        return [SmoothQuantModifier(smoothing_strength=0.8), GPTQModifier(config_groups=_groups(_weights(8, None), tokens), ignore=ignore)]
    raise ValueError(f"unknown format {fmt!r}")


def calibration_set(tokenizer: Any, text: str, samples: int, seq_len: int) -> Any:
    """`samples` windows of `seq_len` tokens cut from the text in order (fewer when it is short)."""
    from datasets import Dataset  # type: ignore[import-not-found]

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = [ids[i:i + seq_len] for i in range(0, len(ids), seq_len)][:samples]
    rows = [r for r in rows if len(r) >= 16]
    return Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("llmcompressor", "compressed-tensors", "torch", "transformers")}


def _cpu_only_pinning() -> None:
    """Without an accelerator, pinning host memory raises in torch; AWQ's cache pins its activations to speed copies to a
    GPU that is not there, so on such a machine pinning becomes a no-op (the values stay where they are)."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache  # type: ignore[import-not-found]

    if not torch.accelerator.is_available():
        IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from llmcompressor import oneshot  # type: ignore[import-not-found]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(max(1, int(spec.get("threads") or os.cpu_count() or 1)))
    _cpu_only_pinning()
    source, out = Path(spec["source"]), Path(spec["output"])
    emit("progress", fraction=0.05, message=f"loading {source.name} on the CPU")
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype="auto", device_map="cpu")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    began = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if spec.get("calibration"):
        data = calibration_set(tokenizer, Path(spec["calibration"]).read_text(encoding="utf-8"), spec["samples"], spec["seq_len"])
        kwargs = {"dataset": data, "num_calibration_samples": len(data), "max_seq_length": spec["seq_len"]}
        emit("progress", fraction=0.15, message=f"calibrating on {len(data)} windows of up to {spec['seq_len']} tokens")
    oneshot(model=model, recipe=recipe(spec), **kwargs)
    emit("progress", fraction=0.85, message=f"saving the {spec['format']} checkpoint")
    model.save_pretrained(str(out), save_compressed=True)
    tokenizer.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and not (out / name).exists():
            shutil.copyfile(source / name, out / name)
    return {"versions": _versions(), "compress_s": round(time.perf_counter() - began, 3),
            "calibration_windows": len(kwargs.get("dataset", ())), "device": "cpu"}


def main(argv: list[str]) -> int:
    die_with_parent()
    spec = json.loads(argv[0])
    try:
        done = run(spec)
    except (ValueError, RuntimeError, OSError, KeyError, ImportError) as exc:
        traceback.print_exc()  # into the log tail the parent keeps
        emit("error", cause=f"llm-compressor failed: {type(exc).__name__}: {str(exc)[:600]}",
             next_step="Read the log lines above; a group size that does not divide a layer's width, or too little memory, are the usual causes.")
        return 2
    emit("result", **done)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
