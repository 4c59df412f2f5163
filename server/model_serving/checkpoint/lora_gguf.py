"""A peft LoRA adapter as a GGUF adapter, with llama.cpp's convert_lora_to_gguf.py (served with --lora / Ollama ADAPTER).

The converter is the one scripts/install.sh unpacks beside convert_hf_to_gguf.py (same llama.cpp
revision as the runtime); it runs offline against the local base folder. Adapters that save
embeddings or lm_head in full cannot be a GGUF adapter: those are refused with the merge as next step.
"""

from __future__ import annotations

import time
from pathlib import Path

from model_serving.checkpoint.adapter import saves_full_embeddings
from model_serving.checkpoint.export import ExportResult, ExportVerification, _explain_failure, provision_converter
from model_serving.checkpoint.inspect import inspect_gguf
from model_serving.checkpoint.lora import preflight
from model_serving.errors import InputError, ServingError, VerificationFailed
from model_serving.jobs import Progress, run_process
from model_serving.settings import Settings
from model_serving.util.paths import atomic_output, confine, sha256_file, tree_sha256
from model_serving.util.process import launcher_argv

SCRIPT = "convert_lora_to_gguf.py"


def export_lora_gguf(settings: Settings, adapter: str, base: str | None, output: str | None, *, outtype: str = "f16",
                     overwrite: bool = False, progress: Progress | None = None) -> ExportResult:
    """Convert `adapter` to a GGUF LoRA for its base; refuse what the GGUF-adapter path cannot carry."""
    progress = progress or Progress()
    started = time.perf_counter()
    adapter_dir = confine(adapter, settings.roots, what="adapter folder")
    details, base_dir, _, _ = preflight(settings, adapter_dir, base)
    full = saves_full_embeddings(details)
    if full:
        raise InputError(f"The adapter saves {', '.join(full)} in full (added tokens or trained embeddings): a GGUF adapter cannot carry them.",
                         f"Merge it instead: model-serving merge {adapter_dir} --base {base_dir}, then export the merged folder.")
    out = confine(output or str(adapter_dir.parent / f"{adapter_dir.name}-lora-{outtype}.gguf"), settings.roots, must_exist=False, what="output path")
    converter = provision_converter(settings)
    script = Path(converter.directory) / SCRIPT
    if not script.is_file():
        raise ServingError(f"llama.cpp's {SCRIPT} is not installed beside the converter ({converter.directory}).",
                           "Run scripts/install.sh again: it unpacks both converters from the llama-cpp-python sdist.")
    with atomic_output(out, overwrite=overwrite) as tmp:
        progress.update(0.1, f"converting the adapter with llama.cpp ({outtype})")
        code, tail = run_process(launcher_argv(script, "--outfile", tmp, "--outtype", outtype, "--base", base_dir, adapter_dir),
                                 progress, env={"NO_LOCAL_GGUF": None, "HF_HUB_OFFLINE": "1"}, tail=60)
        if code != 0:
            raise _explain_failure(code, tail)
        gguf = inspect_gguf(tmp)
        if not gguf.is_adapter:
            raise VerificationFailed(f"{out.name} was written but is not a GGUF adapter (general.type is not 'adapter').",
                                     "Check the adapter folder; nothing was kept.")
        digest = sha256_file(tmp)
        progress.check()
    gguf.path = str(out)
    verification = ExportVerification(parses=True, vocab_size=None, expected_vocab_size=None, chat_template_kept=None, eos_token=None,
                                      stop_token_ids={})
    progress.complete("adapter export done")
    return ExportResult(output_path=str(out), outtype=outtype, file_type=gguf.file_type, size_bytes=out.stat().st_size, sha256=digest,
                        source=str(adapter_dir), source_sha256=tree_sha256(adapter_dir), seconds=round(time.perf_counter() - started, 3),
                        converter=converter, verification=verification, gguf=gguf)
