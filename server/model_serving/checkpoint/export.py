"""Hugging Face checkpoint -> GGUF with llama.cpp's own converter, preflighted and verified.

The converter comes from the llama-cpp-python source distribution of the installed version, so the
file we write and the runtime that reads it are one llama.cpp revision. scripts/install.sh fetches
that sdist once, checks its pinned sha256 and unpacks the converter into the venv
(`converter_home`); export never downloads anything. `LLAMA_CPP_DIR` points at another checkout.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import sys
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from model_serving.checkpoint.inspect import CheckpointInfo, GGUFInfo, inspect_checkpoint, inspect_gguf, safetensors_header
from model_serving.errors import InputError, ServingError, VerificationFailed
from model_serving.jobs import Progress, run_process
from model_serving.settings import Settings
from model_serving.util.artifact import Artifact
from model_serving.util.filehash import BackgroundHash, HashCache
from model_serving.util.paths import confine, partial_path, tree_sha256, write_text_atomic
from model_serving.util.process import launcher_argv

# Imported inside functions: huggingface_hub, about a second to import, only when a checkpoint comes from the Hub.

OutType = Literal["f16", "bf16", "q8_0", "f32", "auto"]
BYTES_PER_WEIGHT = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "auto": 2.0, "q8_0": 1.0625}
# What conversion needs from a Hub repo: never optimizer states or duplicate .bin weights.
HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja", "*.txt", "*.tiktoken", "LICENSE*", "README.md"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
CONVERTER_MEMBERS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")


class Converter(BaseModel):
    directory: str
    script: str
    llama_cpp_python_version: str
    source: str = Field(description="LLAMA_CPP_DIR, or the llama-cpp-python sdist it was unpacked from")


class ExportVerification(BaseModel):
    parses: bool
    vocab_size: int | None
    expected_vocab_size: int | None
    chat_template_kept: bool | None = Field(description="None when the source had no template")
    eos_token: str | None
    stop_token_ids: dict[str, int]
    problems: list[str] = []


class ExportResult(BaseModel):
    output_path: str
    outtype: str
    file_type: str | None
    size_bytes: int
    sha256: str
    source: str
    source_sha256: str
    seconds: float
    skipped: bool = Field(default=False, description="True when an identical earlier output was reused")
    converter: Converter
    verification: ExportVerification
    gguf: GGUFInfo | None = None


# ---------------------------------------------------------------- converter provisioning


def _llama_cpp_version() -> str:
    return version("llama-cpp-python")


def converter_home(version: str) -> Path:
    """Where scripts/install.sh unpacks the converter of llama-cpp-python `version` (inside the venv)."""
    return Path(sys.prefix) / "share" / "model-serving" / f"llama.cpp-{version}"


def provision_converter(settings: Settings | None = None, progress: Progress | None = None) -> Converter:
    """The converter (convert_hf_to_gguf.py + conversion/, gguf-py/) matching the installed runtime: LLAMA_CPP_DIR, or the install's."""
    version = _llama_cpp_version()
    override = os.environ.get("LLAMA_CPP_DIR")
    if override:
        script = Path(override).expanduser() / "convert_hf_to_gguf.py"
        if not script.exists():
            raise InputError(f"LLAMA_CPP_DIR={override} has no convert_hf_to_gguf.py.", "Point LLAMA_CPP_DIR at a llama.cpp checkout, or unset it.")
        return Converter(directory=str(script.parent), script=str(script), llama_cpp_python_version=version, source="LLAMA_CPP_DIR")
    home = converter_home(version)
    if not (home / "convert_hf_to_gguf.py").exists():
        raise ServingError(f"llama.cpp's converter for llama-cpp-python {version} is not installed (looked in {home}).",
                           "Run scripts/install.sh, which provisions it, or set LLAMA_CPP_DIR to a llama.cpp checkout of the same revision.")
    return Converter(directory=str(home), script=str(home / "convert_hf_to_gguf.py"), llama_cpp_python_version=version,
                     source=f"llama-cpp-python {version} sdist")


def unpack_converter(archive: Path, target: Path) -> Path:
    """Unpack only the converter files of a llama-cpp-python sdist into `target` (run by scripts/install.sh)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _partial_folder(target) as tmp, tarfile.open(archive) as tar:
        staging = tmp / "converter"
        members = tar.getmembers()
        prefix = f"{members[0].name.split('/')[0]}/vendor/llama.cpp/"
        wanted = [m for m in members if m.name.startswith(prefix) and m.name[len(prefix):].startswith(CONVERTER_MEMBERS) and (m.isfile() or m.isdir())]
        for member in wanted:
            member.name = member.name[len(prefix):]
        tar.extractall(staging, members=wanted, filter="data")
        if not (staging / "convert_hf_to_gguf.py").exists():
            raise ServingError(f"{archive.name} has no vendor/llama.cpp/convert_hf_to_gguf.py.", "Check the archive, or set LLAMA_CPP_DIR to a llama.cpp checkout.")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


@contextlib.contextmanager
def _partial_folder(target: Path) -> Iterator[Path]:
    """A scratch folder beside `target`, named as a partial `clean` knows; removed whatever happens."""
    tmp = partial_path(target, folder=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def supported_architectures(settings: Settings, converter: Converter) -> set[str]:
    cache = Path(converter.directory) / ".supported-architectures.json"
    if cache.exists():
        return set(json.loads(cache.read_text(encoding="utf-8")))
    code, out = run_process(launcher_argv(converter.script, "--print-supported-models"), env={"NO_LOCAL_GGUF": None}, tail=4000)
    names = set(re.findall(r"^\s*-?\s*([A-Za-z0-9_]+(?:ForCausalLM|ForConditionalGeneration|LMHeadModel|Model|ForCausalLMPipe)\w*)\s*$", out, re.M))
    if code == 0 and names:
        with contextlib.suppress(OSError):  # a read-only install just asks again next time
            write_text_atomic(cache, json.dumps(sorted(names)))
    return names


# ---------------------------------------------------------------- source resolution


def resolve_source(settings: Settings, source: str, progress: Progress) -> Path:
    """A local folder (confined to the roots), or a Hub repo id fetched into the HF cache."""
    candidate = Path(source).expanduser()
    if candidate.exists() or not REPO_ID.match(source):
        return confine(source, settings.roots, what="checkpoint path")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    progress.update(None, f"fetching {source} from the Hugging Face Hub (config, tokenizer, safetensors only)")
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    try:
        path = snapshot_download(source, allow_patterns=HUB_PATTERNS, token=token)
    except LocalEntryNotFoundError:
        raise InputError(f"{source} is not in the local Hugging Face cache and the Hub cannot be reached (offline mode or no network).",
                         "Download it once with network access, or unset HF_HUB_OFFLINE.") from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        hint = "Set HF_TOKEN for a gated or private repo." if status in (401, 403) else "Check the repo id."
        raise InputError(f"The Hub refused {source} (HTTP {status}).", hint) from None
    return Path(path)


# ---------------------------------------------------------------- preflight, convert, verify


def preflight(settings: Settings, checkpoint: Path, outtype: str, output: Path, converter: Converter) -> CheckpointInfo:
    info = inspect_checkpoint(checkpoint)
    if info.kind == "lora_adapter":
        raise InputError(f"{checkpoint} is a LoRA adapter (adapter_config.json), not a full model.",
                         f"Merge it into its base model ({info.adapter_base_model or 'see adapter_config.json'}) with peft's merge_and_unload, then export the merged folder.")
    if info.quantization_config:
        method = info.quantization_config.get("quant_method", "unknown")
        raise InputError(f"{checkpoint} is already quantized ({method}); llama.cpp's converter needs 16- or 32-bit weights.",
                         "Export the original 16-bit checkpoint (or dequantize/merge into it) instead.")
    if not info.weight_files and not list(checkpoint.glob("*.bin")):
        raise InputError(f"{checkpoint} has config.json but no weights (*.safetensors).", "Copy the weight files into the folder.")
    if not info.has_tokenizer:
        raise InputError(f"{checkpoint} has no tokenizer (tokenizer.json or tokenizer.model).", "Save the tokenizer with the model: tokenizer.save_pretrained(folder).")
    supported = supported_architectures(settings, converter)
    arch = info.architectures[0] if info.architectures else None
    if supported and arch and arch not in supported:
        raise InputError(f"llama.cpp's converter (llama-cpp-python {converter.llama_cpp_python_version}) does not support the architecture {arch}.",
                         "Serve it with vLLM or transformers instead, or use a newer llama.cpp via LLAMA_CPP_DIR.")
    need = int((info.parameter_count or info.size_bytes / 2) * BYTES_PER_WEIGHT.get(outtype, 2.0) * 1.05) + (16 << 20)
    free = shutil.disk_usage(output.parent).free
    if need > free:
        raise InputError(f"Not enough disk space for the output: about {need / 2**30:.2f} GiB needed, {free / 2**30:.2f} GiB free in {output.parent}.",
                         "Free some space or choose an output folder on a larger disk.")
    return info


_KNOWN_FAILURES = [
    (re.compile(r"BPE pre-tokenizer was not recognized|chkhsh", re.I),
     "The converter does not recognise this tokenizer's pre-tokenizer.", "Use a newer llama.cpp (LLAMA_CPP_DIR), or keep the base model's tokenizer if you did not change it."),
    (re.compile(r"Model (\w+) is not supported|not supported by this", re.I),
     "The converter does not support this model architecture.", "Serve it with vLLM or transformers, or use a newer llama.cpp via LLAMA_CPP_DIR."),
    (re.compile(r"MemoryError|Killed|out of memory", re.I),
     "The converter ran out of memory.", "Close other programs, or export on a machine with more RAM."),
    (re.compile(r"No space left on device", re.I), "The disk filled up during conversion.", "Free disk space and run export again."),
]


def _explain_failure(code: int, tail: str) -> ServingError:
    for pattern, cause, hint in _KNOWN_FAILURES:
        if pattern.search(tail):
            return ServingError(cause, hint, detail=tail[-3000:])
    if code in (-9, 137):
        return ServingError("The converter was killed (exit 137), most likely out of memory.", "Free memory or use a machine with more RAM.", detail=tail[-3000:])
    return ServingError(f"llama.cpp's converter failed (exit code {code}).", "Read the converter's last lines below; fix the checkpoint and run export again.", detail=tail[-3000:])


def verify_export(info: CheckpointInfo, gguf: GGUFInfo) -> ExportVerification:
    problems = []
    expected = info.vocab_size
    if gguf.vocab_size is None:
        problems.append("The GGUF has no vocabulary.")
    elif expected and gguf.vocab_size != expected and gguf.vocab_size != info.tokenizer_vocab_size:
        problems.append(f"Vocabulary size {gguf.vocab_size} differs from the checkpoint's {expected}.")
    template_kept = None
    if info.has_chat_template:
        template_kept = bool(gguf.chat_template)
        if not template_kept:
            problems.append("The source has a chat template but the GGUF does not carry it.")
    if "eos" not in gguf.special_token_ids:
        problems.append("The GGUF has no EOS token: generation would not stop.")
    elif info.eos_token_ids:
        ids = {gguf.special_token_ids.get("eos"), gguf.special_token_ids.get("eot")}
        if not ids & set(info.eos_token_ids):
            problems.append(f"The GGUF's EOS/EOT ids {sorted(i for i in ids if i is not None)} are not among the checkpoint's eos_token_id {info.eos_token_ids}.")
    if gguf.embedding_length and gguf.token_embedding_shape and gguf.embedding_length not in gguf.token_embedding_shape:
        problems.append(f"The metadata says embedding_length {gguf.embedding_length} but token_embd.weight has shape {gguf.token_embedding_shape}: config.json does not match the weights.")
    stop_ids = {k: v for k, v in gguf.special_token_ids.items() if k in ("eos", "eot", "eom")}
    return ExportVerification(parses=True, vocab_size=gguf.vocab_size, expected_vocab_size=expected, chat_template_kept=template_kept,
                              eos_token=gguf.eos_token, stop_token_ids=stop_ids, problems=problems)


def default_output(checkpoint: Path, outtype: str, source: str, settings: Settings) -> Path:
    base = checkpoint.parent if Path(source).expanduser().exists() else settings.roots[0]
    name = source.rstrip("/").split("/")[-1] if not Path(source).expanduser().exists() else checkpoint.name
    return base / f"{name}-{outtype}.gguf"


def export_gguf(settings: Settings, source: str, output: str | None = None, *, outtype: OutType = "f16",
                overwrite: bool = False, progress: Progress | None = None) -> ExportResult:
    """Convert a checkpoint folder or Hub repo id to GGUF; skip when an identical export already exists."""
    if outtype not in BYTES_PER_WEIGHT:
        raise InputError(f"Unknown export type {outtype!r}.", f"Choose one of {', '.join(BYTES_PER_WEIGHT)}; quantize to other types afterwards.")
    progress = progress or Progress()
    started = time.perf_counter()
    checkpoint = resolve_source(settings, source, progress.span(0.0, 0.1))
    if not checkpoint.is_dir():
        raise InputError(f"{checkpoint} is a file; export takes a checkpoint folder.", "Pass the folder holding config.json (a .gguf needs no export).")
    out = confine(output, settings.roots, must_exist=False, what="output path") if output else default_output(checkpoint, outtype, source, settings)
    confine(out, settings.roots, must_exist=False, what="output path")
    converter = provision_converter(settings, progress.span(0.0, 0.1))
    progress.update(0.1, "preflight")
    info = preflight(settings, checkpoint, outtype, out, converter)
    names = checkpoint_files(checkpoint)
    hashes = HashCache(settings.state_dir)  # by file stat: a checkpoint exported before (or copied by prepare) is not read to hash it
    earlier = export_artifact(out)
    known = tree_sha256(checkpoint, names, hashes.sha256) if earlier.present() and earlier.sidecar.is_file() else None  # the reuse check needs it first
    if known and (previous := recorded_export(out, known, outtype, hashes)):
        progress.complete("identical export exists; reused")
        return previous.model_copy(update={"skipped": True})
    with ThreadPoolExecutor(2, thread_name_prefix="beside-converter") as pool:
        source_hash = pool.submit(tree_sha256, checkpoint, names, hashes.sha256) if known is None else None
        pool.submit(importlib.import_module, "gguf")  # the verification's header walk needs its type tables: 0.3-0.5 s to import in a fresh process
        gguf, verification, digest = _convert(checkpoint, info, outtype, out, overwrite, converter, progress)
        source_sha = source_hash.result() if source_hash is not None else str(known)
    hashes.put(out, digest)  # the quantizer reads this file next: it need not hash it again
    gguf.path = str(out)
    result = ExportResult(output_path=str(out), outtype=outtype, file_type=gguf.file_type, size_bytes=out.stat().st_size, sha256=digest,
                          source=source, source_sha256=source_sha, seconds=round(time.perf_counter() - started, 3),
                          converter=converter, verification=verification, gguf=gguf)
    export_artifact(out).record(result.model_dump_json(indent=2, exclude={"gguf": {"chat_template"}}))
    progress.complete("export done")
    return result


def export_artifact(out: Path) -> Artifact:
    """An exported GGUF and its sidecar `<output>.export.json` (an ExportResult: the checkpoint's tree hash, the output's hash)."""
    return Artifact(out, ".export.json", "sha256")


def checkpoint_files(checkpoint: Path) -> list[str]:
    """The files whose bytes make a checkpoint what it is: its tree hash covers these."""
    return [p.name for p in checkpoint.iterdir() if p.is_file() and not p.name.startswith(".")]


def recorded_export(out: Path, source_sha: str, outtype: str, hashes: HashCache) -> ExportResult | None:
    """The recorded export when it was made from this very source as this type and the output is unchanged.

    The one reuse rule: export_gguf and the deploy plan both ask it.
    """
    record = export_artifact(out).recorded({"source_sha256": source_sha, "outtype": outtype}, hashes)  # the output by stat: export recorded it
    try:
        return ExportResult.model_validate(record) if record is not None else None
    except ValueError:
        return None


def _convert(checkpoint: Path, info: CheckpointInfo, outtype: str, out: Path, overwrite: bool, converter: Converter,
             progress: Progress) -> tuple[GGUFInfo, ExportVerification, str]:
    """Run the converter into a partial, verify it, and rename it into place; its sha256 is taken while it is written."""
    expected_tensors = max(1, sum(1 for f in info.weight_files for k in _tensor_names(checkpoint / f)))
    seen = [0]

    def on_line(line: str) -> None:
        if re.search(r"-->|, shape =", line):
            seen[0] += 1
            progress.update(0.15 + 0.7 * min(seen[0] / expected_tensors, 1.0), f"converting tensor {seen[0]}/{expected_tensors}")

    with export_artifact(out).written(overwrite=overwrite) as tmp:
        progress.update(0.15, f"converting with llama.cpp ({outtype})")
        following = BackgroundHash(tmp, growing=True)  # GGUFWriter writes front to back: hashed as it grows, not read again after
        try:
            # NO_LOCAL_GGUF unset: the converter must use its own gguf-py, the same revision as the script
            code, tail = run_process(launcher_argv(converter.script, "--outfile", tmp, "--outtype", outtype, checkpoint),
                                     progress, env={"NO_LOCAL_GGUF": None}, on_line=on_line, tail=60)
        except BaseException:
            following.stop()
            raise
        if code != 0:
            following.stop()
            raise _explain_failure(code, tail)
        digest = following.result()
        progress.update(0.9, "verifying the GGUF")
        gguf = inspect_gguf(tmp)
        verification = verify_export(info, gguf)
        if verification.problems:
            raise VerificationFailed("The exported GGUF failed verification: " + " ".join(verification.problems),
                                     "Fix the checkpoint (tokenizer_config.json chat_template, generation_config.json eos_token_id) and export again.")
        progress.check()  # the last moment a cancel removes the output; after the rename it is complete
    return gguf, verification, digest


def _tensor_names(path: Path) -> list[str]:
    return [k for k in safetensors_header(path) if k != "__metadata__"]


if __name__ == "__main__":  # scripts/install.sh: python -m model_serving.checkpoint.export unpack SDIST TARGET
    if len(sys.argv) != 4 or sys.argv[1] != "unpack":
        sys.exit("usage: python -m model_serving.checkpoint.export unpack SDIST TARGET")
    print(unpack_converter(Path(sys.argv[2]), Path(sys.argv[3])))
