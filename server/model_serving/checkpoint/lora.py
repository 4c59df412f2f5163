"""Merge a peft LoRA adapter into its 16-bit base, and prove the merge kept the adapter's effect.

Everything that can be refused is refused before torch loads a weight: a missing base, a quantized
base, a base whose shapes do not fit the adapter, a malformed adapter_config.json. The merged
checkpoint is written to a temporary folder beside the output and renamed, so a failure leaves nothing.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from model_serving.checkpoint.adapter import add_weights, find_base, parse_adapter_config, shape_mismatches
from model_serving.checkpoint.inspect import CheckpointInfo, chat_template, inspect_checkpoint, read_json, safetensors_header
from model_serving.errors import InputError, VerificationFailed
from model_serving.jobs import Progress
from model_serving.settings import Settings
from model_serving.util.paths import atomic_folder, confine

# Imported inside functions: torch, transformers and peft (seconds to import), only by the merge itself.

MergeDtype = Literal["bfloat16", "float16"]
PROMPTS = ("The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,")
# The merge and its check run in float32, so merged and unmerged differ only by summation order; in 16 bits
# the rounding of the two paths differs by a few percent of the logit scale and would hide a small adapter.
RELATIVE_TOLERANCE = 1e-3
QUANT_SUFFIX = re.compile(r"[-_.](bnb[-_]?4bit|bnb[-_]?8bit|4bit|8bit|gptq.*|awq.*|int4|int8)$", re.IGNORECASE)


class LogitCheck(BaseModel):
    prompts: int
    tolerance: float  # max |merged - unmerged| / max |unmerged| allowed
    merged_vs_adapter: float  # that ratio, measured
    adapter_vs_base: float  # max |unmerged - base| / max |unmerged|: the adapter's effect
    top1_agreement: float  # merged vs unmerged, greedy next-token agreement over all positions
    passed: bool


class MergeResult(BaseModel):
    output_path: str
    adapter_path: str
    base_path: str
    base_dtype: str | None
    dtype: str
    tokenizer_from: Literal["adapter", "base"]
    chat_template_from: Literal["adapter", "base", "none"]
    added_tokens: int
    rank: int
    alpha: float
    verification: LogitCheck
    skipped: bool = False
    seconds: float = 0.0


def sixteen_bit_original(base: CheckpointInfo, name: str | None) -> str:
    """The likely 16-bit original of a quantized base: its name without the -bnb-4bit/-GPTQ/-AWQ suffix."""
    stem = name or Path(base.path).name
    original = QUANT_SUFFIX.sub("", stem)
    return original if original != stem else f"the 16-bit model that {stem} was quantized from"


def preflight(settings: Settings, adapter: Path, base: str | None) -> tuple[Any, Path, CheckpointInfo, Any]:
    """(details, base folder, base info, adapter pairs), or the InputError that explains the refusal."""
    if not (adapter / "adapter_config.json").is_file():
        raise InputError(f"{adapter} is not a LoRA adapter: it has no adapter_config.json.",
                         "Point at the folder peft's save_pretrained wrote (adapter_config.json, adapter_model.safetensors).")
    details = parse_adapter_config(read_json(adapter / "adapter_config.json"))
    weights = sorted(adapter.glob("adapter_model*.safetensors"))
    if not weights:
        raise InputError(f"{adapter} has no adapter_model.safetensors.", "Save the adapter again with peft's save_pretrained.")
    pairs: dict[str, Any] = {}
    for file in weights:
        pairs.update(add_weights(details, safetensors_header(file)))
    base_dir = find_base(settings, base, details.base_model)
    if base_dir is None:
        raise InputError(f"The adapter's base ({details.base_model or 'not named in adapter_config.json'}) is not available locally.",
                         "Pass the base model's folder with --base (the 16-bit checkpoint the adapter was trained on).")
    info = inspect_checkpoint(base_dir)
    if info.kind != "hf_checkpoint":
        raise InputError(f"The base {base_dir} is itself a LoRA adapter.", "Pass the full base model with --base.")
    if info.quantization_config:
        method = info.quantization_config.get("quant_method", "quantized")
        raise InputError(f"The base {base_dir.name} is quantized ({method}): merging into it would round the adapter away.",
                         f"Merge into the 16-bit original ({sixteen_bit_original(info, details.base_model)}) and quantize after the merge.")
    shapes = {k: v["shape"] for f in sorted(base_dir.glob("*.safetensors")) for k, v in safetensors_header(f).items() if k != "__metadata__"}
    bad = shape_mismatches(pairs, shapes)
    if bad:
        raise InputError(f"The base {base_dir.name} ({', '.join(info.architectures) or 'unknown'}) does not fit the adapter: "
                         + "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "") + ".",
                         f"Pass the base the adapter was trained on ({details.base_model or 'see adapter_config.json'}) with --base.")
    return details, base_dir, info, pairs


def merge_dtype(base_dtype: str | None, asked: MergeDtype) -> str:
    """A 16-bit base keeps its dtype; anything else (float32, unknown) becomes the one asked for."""
    known = {"float16": "float16", "F16": "float16", "bfloat16": "bfloat16", "BF16": "bfloat16"}
    return known.get(base_dtype or "", asked)


def _logits(model: Any, batches: list[Any]) -> Any:
    import torch

    with torch.no_grad():
        return torch.cat([model(**b).logits.float().flatten(0, 1) for b in batches])


def verify_merge(base_logits: Any, unmerged: Any, merged: Any) -> LogitCheck:
    scale = float(unmerged.abs().max()) or 1.0
    drift = float((merged - unmerged).abs().max()) / scale
    effect = float((unmerged - base_logits).abs().max()) / scale
    agree = float((merged.argmax(-1) == unmerged.argmax(-1)).float().mean())
    return LogitCheck(prompts=len(PROMPTS), tolerance=RELATIVE_TOLERANCE, merged_vs_adapter=drift, adapter_vs_base=effect,
                      top1_agreement=agree, passed=drift <= RELATIVE_TOLERANCE and effect > max(10 * drift, RELATIVE_TOLERANCE))


def _load(adapter: Path, base_dir: Path, progress: Progress) -> tuple[Any, Any, str]:
    """The base + adapter (unmerged, through peft, in float32) and the tokenizer the merged model keeps."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    own = (adapter / "tokenizer.json").is_file() or (adapter / "tokenizer.model").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter if own else base_dir))
    progress.update(0.1, "loading the base")
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)  # 16-bit weights widen exactly
    embeddings: Any = model.get_input_embeddings()
    if len(tokenizer) > embeddings.weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # added tokens: the adapter's saved embedding rows fill them
    progress.check()
    progress.update(0.3, "applying the adapter")
    return PeftModel.from_pretrained(model, str(adapter)), tokenizer, "adapter" if own else "base"


def _write(merged: Any, tokenizer: Any, template: str | None, output: Path) -> None:
    with atomic_folder(output) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if template is not None:  # chat_template.jinja wins over tokenizer_config.json for every reader
            (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")


def merge_adapter(settings: Settings, adapter: str, base: str | None, output: str | None, *, dtype: MergeDtype = "bfloat16",
                  overwrite: bool = False, progress: Progress | None = None) -> MergeResult:
    """Merge `adapter` into `base` with peft's merge_and_unload; the logit check must pass before the output appears."""
    progress = progress or Progress()
    start = time.monotonic()
    adapter_dir = confine(adapter, settings.roots, what="adapter folder")
    details, base_dir, info, _ = preflight(settings, adapter_dir, base)
    out = confine(output or str(adapter_dir.parent / f"{adapter_dir.name}-merged"), settings.roots, must_exist=False, what="output folder")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists.", "Pass replace (--replace) to replace it, or choose another output (--output).")
    target = merge_dtype(info.dtype, dtype)
    peft_model, tokenizer, tokenizer_from = _load(adapter_dir, base_dir, progress)
    batches = [tokenizer(p, return_tensors="pt") for p in PROMPTS]
    unmerged = _logits(peft_model, batches)
    with peft_model.disable_adapter():
        base_logits = _logits(peft_model, batches)
    progress.check()
    progress.update(0.6, "merging")
    merged = peft_model.merge_and_unload()
    check = verify_merge(base_logits, unmerged, _logits(merged, batches))
    if not check.passed:
        raise VerificationFailed(f"The merge check failed: merged vs base+adapter {check.merged_vs_adapter:.4f} (tolerance "
                                 f"{check.tolerance}), adapter vs base {check.adapter_vs_base:.4f}.",
                                 "Check that the adapter was trained on this base; nothing was written.")
    own_template = chat_template(adapter_dir)[0]
    template = own_template or chat_template(base_dir)[0]
    progress.update(0.8, f"writing {out.name}")
    import torch

    _write(merged.to(getattr(torch, target)), tokenizer, template, out)  # one rounding, to the base's own 16-bit dtype
    progress.complete(f"merged into {out}")
    return MergeResult(output_path=str(out), adapter_path=str(adapter_dir), base_path=str(base_dir), base_dtype=info.dtype, dtype=target,
                       tokenizer_from=tokenizer_from, chat_template_from="adapter" if own_template else ("base" if template else "none"),
                       added_tokens=max(0, len(tokenizer) - (info.vocab_size or len(tokenizer))), rank=details.rank, alpha=details.alpha,
                       verification=check, seconds=time.monotonic() - start)
