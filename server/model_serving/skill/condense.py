"""`skill build`: cached upstream pages -> facts.json and the generated reference tables.

Facts (names, types, defaults, figures) come from the pages through `extract`; every sentence and
note in the output is ours (the *_NOTES tables below). Each generated file lists the pages it was
built from with their sha256 and fetch date. All files are written to a staging folder first and
moved into place only when every table was extracted, so a failure leaves the old references.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from model_serving.gguf.filetypes import IMATRIX_REQUIRED, IMATRIX_UNUSED
from model_serving.jobs import Progress
from model_serving.skill import extract
from model_serving.skill.cache import DocsCache, now_iso
from model_serving.skill.sources import SourceList
from model_serving.skill.toolmap import ENDPOINT_TOOLS, tools_for

FACTS_FILE = "facts.json"


class TableSpec(BaseModel):
    name: str
    key: str
    sources: list[str]


class SourceStamp(BaseModel):
    url: str
    sha256: str
    fetched_at: str


class FactTable(BaseModel):
    key: str
    sources: list[str]
    rows: list[dict[str, Any]]

    def by_key(self) -> dict[str, dict[str, Any]]:
        return {str(row[self.key]): row for row in self.rows}


class Facts(BaseModel):
    built_at: str
    sources: dict[str, SourceStamp]
    tables: dict[str, FactTable]


class BuildResult(BaseModel):
    references_dir: str
    files: list[str] = Field(description="Generated files, relative to the skill folder")
    tables: dict[str, int] = Field(description="Rows per fact table")
    sources: dict[str, SourceStamp]


Extractor = Callable[[dict[str, str]], list[dict[str, Any]]]

TABLES: list[tuple[TableSpec, Extractor]] = [
    (TableSpec(name="modelfile_instructions", key="name", sources=["ollama-modelfile"]), extract.modelfile_instructions),
    (TableSpec(name="modelfile_parameters", key="name", sources=["ollama-modelfile"]), extract.modelfile_parameters),
    (TableSpec(name="ollama_endpoints", key="endpoint", sources=["ollama-api"]),
     lambda pages: [r for r in extract.ollama_endpoints(pages) if r["endpoint"] in ENDPOINT_TOOLS]),
    (TableSpec(name="ollama_quantize_targets", key="type", sources=["ollama-import", "ollama-api"]), extract.ollama_quantize_targets),
    (TableSpec(name="quantization_types", key="type", sources=["llama-quantize"]), extract.quantization_types),
    (TableSpec(name="quantize_options", key="option", sources=["llama-quantize"]), extract.quantize_options),
    (TableSpec(name="ggml_types", key="name", sources=["gguf-spec"]), extract.ggml_types),
    (TableSpec(name="gguf_file_types", key="name", sources=["gguf-spec"]), extract.gguf_file_types),
    (TableSpec(name="gguf_keys", key="key", sources=["gguf-spec"]), extract.gguf_keys),
    (TableSpec(name="ollama_environment", key="name", sources=["ollama-faq", "ollama-context-length", "ollama-gpu", "ollama-troubleshooting", "ollama-import"]), extract.ollama_environment),
    (TableSpec(name="ollama_context_tiers", key="vram", sources=["ollama-context-length"]), extract.ollama_context_tiers),
    (TableSpec(name="kv_cache_types", key="type", sources=["ollama-faq"]), extract.kv_cache_types),
    # Only the options our tuning advice uses (SERVER_FLAG_NOTES): the rest would be drift noise.
    (TableSpec(name="llama_server_options", key="env", sources=["llama-server"]),
     lambda pages: [r for r in extract.llama_server_options(pages) if r["env"] in SERVER_FLAG_NOTES]),
    (TableSpec(name="llama_server_endpoints", key="endpoint", sources=["llama-server"]), extract.llama_server_endpoints),
    (TableSpec(name="llama_bench_options", key="flags", sources=["llama-bench"]), extract.llama_bench_options),
]


def extract_facts(cache: DocsCache, sources: SourceList, progress: Progress | None = None) -> Facts:
    """Read every page the tables need (refusing hand-edited ones) and extract all tables."""
    progress = progress or Progress()
    manifest = cache.load()
    needed = sorted({s for spec, _ in TABLES for s in spec.sources})
    pages: dict[str, str] = {}
    stamps: dict[str, SourceStamp] = {}
    for source_id in needed:
        sources.get(source_id)  # a table naming a source missing from sources.yaml is a bug worth a clear error
        entry, text = cache.read(source_id, manifest)
        pages[source_id] = text
        stamps[source_id] = SourceStamp(url=entry.url, sha256=entry.sha256, fetched_at=entry.fetched_at)
    tables: dict[str, FactTable] = {}
    for index, (spec, extractor) in enumerate(TABLES):
        progress.update(index / len(TABLES), f"extracting {spec.name}")
        tables[spec.name] = FactTable(key=spec.key, sources=spec.sources, rows=extract.json_safe(extractor(pages)))
    return Facts(built_at=now_iso(), sources=stamps, tables=tables)


def load_facts(references: Path) -> Facts | None:
    path = references / FACTS_FILE
    if not path.exists():
        return None
    return Facts.model_validate_json(path.read_text(encoding="utf-8"))


# --- our own words ----------------------------------------------------------------------------

INSTRUCTION_NOTES = {
    "FROM": "What to build on: a model name, a GGUF file or a safetensors folder.",
    "PARAMETER": "One runtime option per line (table below); repeat `stop` for several.",
    "TEMPLATE": "Go text/template that turns messages into the prompt; must match the model's chat format.",
    "SYSTEM": "Default system message.",
    "ADAPTER": "LoRA adapter on top of FROM; the base must be the one the adapter was trained on.",
    "LICENSE": "Licence text shipped with the model.",
    "MESSAGE": "Seed conversation turns (system, user, assistant).",
    "REQUIRES": "Oldest Ollama version that can run the model.",
}

PARAM_NOTES = {
    "num_ctx": "Context window in tokens; KV-cache memory grows linearly with it. Ollama's runtime default follows OLLAMA_CONTEXT_LENGTH or the VRAM tiers, not the documented figure.",
    "repeat_last_n": "Window the repetition penalty looks back over (0 off, -1 whole context).",
    "repeat_penalty": "Penalty on recently used tokens; 1.0 leaves it off.",
    "temperature": "Randomness of sampling; use 0 for verification runs.",
    "seed": "Fix it to make sampled output repeatable.",
    "stop": "Stop string; must include the chat template's end-of-turn marker or output never ends.",
    "num_predict": "Cap on generated tokens (-1: until a stop); bounding it bounds total latency.",
    "draft_num_predict": "Tokens a speculative draft proposes per step; 0 turns drafting off.",
    "top_k": "Sample among the k likeliest tokens only.",
    "top_p": "Nucleus sampling: smallest set of tokens whose probabilities reach p.",
    "min_p": "Drop tokens below p times the top token's probability.",
}


ENV_NOTES = {
    "OLLAMA_HOST": "Where the server listens and where clients (and our tools) look for it.",
    "OLLAMA_CONTEXT_LENGTH": "Default context for every model; raises KV memory for all of them.",
    "OLLAMA_KEEP_ALIVE": "How long an idle model stays loaded; a cold load costs seconds of first-token time.",
    "OLLAMA_NUM_PARALLEL": "Concurrent requests per model; each slot gets its own context, so memory scales with it.",
    "OLLAMA_MAX_LOADED_MODELS": "Models resident at once.",
    "OLLAMA_MAX_QUEUE": "Requests waiting beyond this are refused with HTTP 503.",
    "OLLAMA_FLASH_ATTENTION": "Needed for a quantized KV cache; lowers memory at long context.",
    "OLLAMA_KV_CACHE_TYPE": "f16, q8_0 or q4_0; one setting for all models.",
    "OLLAMA_MODELS": "Model store (blobs and manifests).",
    "OLLAMA_ORIGINS": "Extra browser origins allowed to call the API.",
    "OLLAMA_DEBUG": "Verbose server log; first stop when a model misbehaves.",
    "OLLAMA_LLM_LIBRARY": "Force one compute backend instead of auto-detection.",
    "CUDA_VISIBLE_DEVICES": "Which NVIDIA GPUs the server may use.",
}

# The llama-server options that matter for the latency and memory targets, by environment variable.
SERVER_FLAG_NOTES: dict[str, str] = {
    "LLAMA_ARG_CTX_SIZE": "Total context; split across the parallel slots.",
    "LLAMA_ARG_N_PARALLEL": "Slots served at once (continuous batching shares the GPU/CPU among them).",
    "LLAMA_ARG_CONT_BATCHING": "Keep on: new requests join a running batch.",
    "LLAMA_ARG_THREADS": "Generation threads; physical cores, not hyperthreads.",
    "LLAMA_ARG_THREADS_BATCH": "Threads for prompt processing.",
    "LLAMA_ARG_BATCH": "Logical batch for prompt processing.",
    "LLAMA_ARG_UBATCH": "Physical batch; larger speeds up long prompts at some memory cost.",
    "LLAMA_ARG_N_GPU_LAYERS": "Layers offloaded to the GPU; all of them when it fits.",
    "LLAMA_ARG_FLASH_ATTN": "Flash attention; required for a quantized V cache.",
    "LLAMA_ARG_CACHE_TYPE_K": "K cache type; q8_0 halves KV memory with little loss.",
    "LLAMA_ARG_CACHE_TYPE_V": "V cache type; quantized values need flash attention.",
    "LLAMA_ARG_CACHE_REUSE": "Reuse cached prompt chunks by KV shifting (0 off).",
    "LLAMA_ARG_KV_OFFLOAD": "Keep the KV cache on the GPU.",
    "LLAMA_ARG_N_PREDICT": "Server-wide cap on generated tokens.",
    "LLAMA_ARG_HOST": "Bind address; keep 127.0.0.1 unless it sits behind a proxy.",
    "LLAMA_ARG_PORT": "Listening port.",
    "LLAMA_ARG_ENDPOINT_METRICS": "Exposes Prometheus /metrics for benchmarks.",
    "LLAMA_ARG_ENDPOINT_SLOTS": "Exposes /slots to see per-slot state.",
    "LLAMA_ARG_JINJA": "Use the GGUF's Jinja chat template (needed for tool calls).",
    "LLAMA_ARG_CHAT_TEMPLATE": "Override the chat template by name.",
    "LLAMA_ARG_LOAD_MODE": "mmap/mlock behaviour at load.",
    "LLAMA_ARG_ALIAS": "Model name reported by /v1/models.",
    "LLAMA_ARG_API_KEY": "Require a bearer key.",
}


# --- rendering --------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _sources_block(facts: Facts, ids: list[str]) -> list[str]:
    rows = [[i, facts.sources[i].url, f"`{facts.sources[i].sha256}`", facts.sources[i].fetched_at[:10]] for i in ids]
    return ["## Sources", "", "Facts above (names, types, defaults, figures) were extracted from these pages; notes are ours.", "", *_table(["page", "url", "sha256", "fetched"], rows)]


def _head(title: str, summary: str) -> list[str]:
    return [f"# {title}", "", "<!-- Generated by `model-serving skill build`; do not edit by hand. Change the extractor or the notes in server/model_serving/skill/condense.py instead. -->", "", summary, ""]


def _sources_of(facts: Facts, *tables: str) -> list[str]:
    return sorted({s for t in tables for s in facts.tables[t].sources})


def render_modelfile(facts: Facts) -> str:
    out = _head("Modelfile reference", "Instructions and PARAMETER names Ollama accepts, with the types and defaults its docs state. Read it before writing a Modelfile or the `parameters` of a create request.")
    out += ["## Instructions", ""]
    out += _table(["instruction", "required", "what it is for"], [[f"`{r['name']}`", r["required"], INSTRUCTION_NOTES.get(r["name"])] for r in facts.tables["modelfile_instructions"].rows])
    out += ["## Parameters", ""]
    out += _table(["parameter", "type", "documented default", "example", "note"],
                  [[f"`{r['name']}`", r["type"], r["default"], f"`{r['example']}`" if r["example"] else None, PARAM_NOTES.get(r["name"])] for r in facts.tables["modelfile_parameters"].rows])
    out += _sources_block(facts, _sources_of(facts, "modelfile_instructions", "modelfile_parameters"))
    return "\n".join(out)


def render_api(facts: Facts) -> str:
    out = _head("Ollama REST API: the endpoints our tools call", "Request fields (`*` = required, `?` = optional) and the keys seen in the documented responses. The tools column names the MCP tools that depend on each endpoint.")
    rows = []
    for r in facts.tables["ollama_endpoints"].rows:
        fields = [f["name"] + ("*" if f["required"] else "?" if f["optional"] else "") for f in r["fields"]]
        rows.append([f"`{r['endpoint']}`", tools_for("ollama_endpoints", r["endpoint"]), " ".join(fields) or None, " ".join(r["response_keys"]) or None])
    out += _table(["endpoint", "our tools", "request fields", "response keys"], rows)
    out += ["## Quantization types `ollama create --quantize` accepts", "", "Only from an unquantized (F16/BF16/F32) source; any other type is made with `quantize_gguf` and imported as a GGUF.", ""]
    out += _table(["type", "marked recommended"], [[f"`{r['type']}`", r["recommended"]] for r in facts.tables["ollama_quantize_targets"].rows])
    out += _sources_block(facts, _sources_of(facts, "ollama_endpoints", "ollama_quantize_targets"))
    return "\n".join(out)


def render_quantization(facts: Facts) -> str:
    out = _head("Quantization types", "Measured bits per weight, file size and speed per llama.cpp quantization type, from the quantizer's own table (Llama-3.1-8B; speeds on the hardware upstream used, useful as ratios only). Derived columns are ours: GB per billion parameters is bpw / 8, and the 7B column multiplies it by 7.")
    ollama = {r["type"].upper() for r in facts.tables["ollama_quantize_targets"].rows}
    rows = []
    for r in sorted(facts.tables["quantization_types"].rows, key=lambda r: r.get("bpw", 0)):
        bpw = r.get("bpw")
        rows.append([
            f"`{r['type']}`", bpw, r.get("size_gib"), round(bpw / 8, 3) if bpw else None, round(7 * bpw / 8, 2) if bpw else None,
            r.get("pp512_ts"), r.get("tg128_ts"),
            "required" if r["type"] in IMATRIX_REQUIRED else "-" if r["type"] in IMATRIX_UNUSED else "helps", r["type"] in ollama,
        ])
    out += _table(["type", "bits/weight", "GiB (8B)", "GB per 1B params", "GB for 7B", "prompt t/s", "gen t/s", "imatrix", "ollama create can make it"], rows)
    out += ["`imatrix: required` means llama-quantize stops without `--imatrix` (from llama.cpp's quantizer source, not the fetched pages).", ""]
    out += ["## KV cache types (Ollama `OLLAMA_KV_CACHE_TYPE`, llama-server `-ctk`/`-ctv`)", ""]
    out += _table(["type", "memory relative to f16", "default"], [[f"`{r['type']}`", r["memory_vs_f16"], r["default"]] for r in facts.tables["kv_cache_types"].rows])
    out += ["## llama-quantize options", "", " ".join(f"`{r['option']}`" for r in facts.tables["quantize_options"].rows), ""]
    out += ["## GGUF `general.file_type` values", ""]
    out += _table(["file type", "id", "removed"], [[r["name"], r["id"], r["removed"]] for r in facts.tables["gguf_file_types"].rows])
    out += ["## ggml tensor types (ids as stored in GGUF tensor info)", ""]
    out += [", ".join(f"{r['name']}={r['id']}" for r in facts.tables["ggml_types"].rows), ""]
    out += _sources_block(facts, _sources_of(facts, "quantization_types", "kv_cache_types", "ollama_quantize_targets", "gguf_file_types"))
    return "\n".join(out)


def render_server(facts: Facts) -> str:
    out = _head("Server settings: Ollama environment and llama-server options", "Defaults as the upstream docs state them; `-` means the docs name the setting without a default.")
    out += ["## Ollama server environment", ""]
    out += _table(["variable", "documented default", "note", "documented in"],
                  [[f"`{r['name']}`", r["default"], ENV_NOTES.get(r["name"]), r["pages"]] for r in facts.tables["ollama_environment"].rows])
    out += ["## Ollama default context by VRAM", ""]
    out += _table(["VRAM", "default context"], [[r["vram"], r["default_context"]] for r in facts.tables["ollama_context_tiers"].rows])
    out += ["## llama-server options for latency and memory", "", "The subset our tuning advice uses; `llama-server --help` lists the rest.", ""]
    rows = [[f"`{r['flags']}`", f"`{r['env']}`", r["default"], r["allowed"], SERVER_FLAG_NOTES[r["env"]]] for r in facts.tables["llama_server_options"].rows if r["env"] in SERVER_FLAG_NOTES]
    out += _table(["flags", "environment", "default", "allowed values", "note"], rows)
    out += ["## llama-server endpoints", "", " ".join(f"`{r['endpoint']}`" for r in facts.tables["llama_server_endpoints"].rows), ""]
    out += ["## llama-bench options", ""]
    out += _table(["flags", "value", "default"], [[f"`{r['flags']}`", f"`{r['value']}`" if r["value"] else None, r["default"]] for r in facts.tables["llama_bench_options"].rows])
    out += _sources_block(facts, _sources_of(facts, "ollama_environment", "ollama_context_tiers", "llama_server_options", "llama_bench_options"))
    return "\n".join(out)


def render_gguf(facts: Facts) -> str:
    out = _head("GGUF metadata keys", "Standard keys of the GGUF specification with their value types; `[llm]` stands for the architecture name (e.g. `llama.context_length`). Required keys must be present in every file.")
    out += _table(["key", "type", "required", "group"], [[f"`{r['key']}`", r["type"], r["required"], r["section"]] for r in facts.tables["gguf_keys"].rows])
    out += _sources_block(facts, _sources_of(facts, "gguf_keys"))
    return "\n".join(out)


RENDERERS: dict[str, Callable[[Facts], str]] = {
    "modelfile.md": render_modelfile,
    "ollama-api.md": render_api,
    "quantization.md": render_quantization,
    "server-settings.md": render_server,
    "gguf-metadata.md": render_gguf,
}
GENERATED_FILES = [*RENDERERS, FACTS_FILE]


def build_references(cache: DocsCache, sources: SourceList, skill: Path, progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress()
    facts = extract_facts(cache, sources, progress.span(0.0, 0.7))
    references = skill / "references"
    references.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=references, prefix=".build-"))
    try:
        for name, render in RENDERERS.items():
            (staging / name).write_text(render(facts).rstrip("\n") + "\n", encoding="utf-8")
        (staging / FACTS_FILE).write_text(json.dumps(facts.model_dump(mode="json"), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        progress.update(0.9, "writing references")
        for name in GENERATED_FILES:
            (staging / name).replace(references / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress.update(1.0, "done")
    return BuildResult(
        references_dir=str(references), files=[f"references/{n}" for n in GENERATED_FILES],
        tables={name: len(t.rows) for name, t in facts.tables.items()}, sources=facts.sources,
    )
