"""Facts from cached upstream pages: names, types, defaults and figures, never prose.

Each extractor reads one page shape and returns rows (plain dicts keyed by the table's key field).
An extractor that finds nothing raises, because that means the upstream layout changed and the
skill must not silently lose a table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from model_serving.errors import ServingError
from model_serving.skill.markdown import code_blocks, section, sections, strip_fences, tables, unmark

Row = dict[str, Any]


class LayoutChanged(ServingError):
    """An upstream page no longer has the shape an extractor reads."""


def _need(rows: list[Row], what: str, source_id: str) -> list[Row]:
    if not rows:
        raise LayoutChanged(f"No {what} were found in the cached page {source_id}; its layout changed upstream.", "Update the extractor in model_serving/skill/extract.py, then run `model-serving skill build` again.")
    return rows


def _dedupe(rows: list[Row], key: str) -> list[Row]:
    seen: dict[str, Row] = {}
    for row in rows:
        seen.setdefault(row[key], row)
    return list(seen.values())


# --- Ollama Modelfile -------------------------------------------------------------------------

def modelfile_instructions(pages: dict[str, str]) -> list[Row]:
    rows = []
    for header, body in tables(pages["ollama-modelfile"]):
        if header and header[0].lower() == "instruction":
            for cells in body:
                name = re.search(r"`([A-Z]+)`", cells[0])
                if name:
                    rows.append({"name": name.group(1), "required": "required" in cells[0].lower()})
    return _need(rows, "Modelfile instructions", "ollama-modelfile")


def modelfile_parameters(pages: dict[str, str]) -> list[Row]:
    rows = []
    for header, body in tables(pages["ollama-modelfile"]):
        lowered = [h.lower() for h in header]
        if lowered and lowered[0] == "parameter" and "value type" in lowered:
            type_col, example_col = lowered.index("value type"), lowered.index("example usage") if "example usage" in lowered else None
            for cells in body:
                default = re.search(r"\(Default: ([^,)]+)", cells[1]) or re.search(r"default to (\w+)", cells[1])
                rows.append({
                    "name": unmark(cells[0]),
                    "type": unmark(cells[type_col]),
                    "default": default.group(1).strip() if default else None,
                    "example": unmark(cells[example_col]) if example_col is not None else None,
                })
    return _need(rows, "Modelfile parameters", "ollama-modelfile")


# --- Ollama REST API --------------------------------------------------------------------------

_ROUTE = re.compile(r"^(GET|POST|DELETE|HEAD|PUT)\s+(/\S+)\s*$", re.MULTILINE)


def _response_blocks(body: str) -> list[str]:
    """Code blocks under the example "Response" headings (requests carry user data such as schemas)."""
    found = []
    for part in re.split(r"^(?=#{3,6} )", body, flags=re.MULTILINE):
        if re.match(r"^#{3,6} [^\n]*Response", part):
            blocks = code_blocks(part)
            if blocks and blocks[0].lstrip().startswith("{"):
                found.append(blocks[0])  # later blocks under the same heading illustrate payloads
    return found


def _top_level_keys(block: str) -> set[str]:
    keys: set[str] = set()
    for line in block.splitlines():
        if line.startswith("{") and line.rstrip().endswith("}"):  # one NDJSON object per line
            keys.update(re.findall(r'"(\w+)"\s*:\s*(?:"(?:[^"\\]|\\.)*"|[^,{}\[\]]+|\{[^{}]*\}|\[[^\[\]]*\])', line[1:]))
        else:
            match = re.match(r'^ {2,6}"?(\w+)"?\s*:', line)  # top level and the objects one level down
            if match:
                keys.add(match.group(1))
    return keys


def ollama_endpoints(pages: dict[str, str]) -> list[Row]:
    rows = []
    for part in sections(pages["ollama-api"], 2):
        blocks = code_blocks(part.body)
        route = _ROUTE.search(blocks[0]) if blocks else None
        if route is None:
            continue
        before_examples = re.split(r"^###\s+Examples", part.body, maxsplit=1, flags=re.MULTILINE)[0]
        fields, optional_block = [], False
        for line in strip_fences(before_examples).splitlines():
            if re.match(r"^\S.*\(optional\):\s*$", line):
                optional_block = True  # "Advanced parameters (optional):" introduces optional fields
            item = re.match(r"^- `(\w+)`(.*)$", line)
            if item:
                rest = item.group(2)
                default = re.search(r"\(default: `?([^`)]+)`?\)", rest)
                fields.append({
                    "name": item.group(1),
                    "required": "(required)" in rest,
                    "optional": optional_block or "(optional)" in rest,
                    "default": default.group(1) if default else None,
                })
        response_keys: set[str] = set()
        for block in _response_blocks(part.body):
            response_keys |= _top_level_keys(block)
        rows.append({
            "endpoint": f"{route.group(1)} {route.group(2)}",
            "title": part.title,
            "fields": _dedupe(fields, "name"),
            "response_keys": sorted(response_keys),
        })
    return _need(rows, "API endpoints", "ollama-api")


def ollama_quantize_targets(pages: dict[str, str]) -> list[Row]:
    """The types `ollama create --quantize` takes, from the import guide and the API reference."""
    names: dict[str, dict[str, Any]] = {}
    part = section(pages["ollama-import"], r"supported quantizations", 3)
    if part is not None:
        for name in re.findall(r"^- `(\w+)`", part.body, re.MULTILINE):
            names.setdefault(name, {"type": name, "recommended": False})
    api_part = section(pages["ollama-api"], r"quantization types", 4)
    if api_part is not None:
        for header, body in tables(api_part.body):
            if header and header[0].lower() == "type":
                for cells in body:
                    row = names.setdefault(cells[0], {"type": cells[0], "recommended": False})
                    row["recommended"] = row["recommended"] or "*" in cells[1]
    return _need(list(names.values()), "Ollama quantization types", "ollama-import")


# --- llama.cpp quantize ----------------------------------------------------------------------

def quantization_types(pages: dict[str, str]) -> list[Row]:
    """The measured table: bits per weight, size, prompt and generation speed per type (Llama-3.1-8B)."""
    measures = {"bits/weight": "bpw", "size (gib)": "size_gib", "prompt processing t/s @ 512": "pp512_ts", "text generation t/s @ 128": "tg128_ts"}
    found: dict[str, Row] = {}
    for header, body in tables(pages["llama-quantize"]):
        if not header or header[0].lower() != "measure":
            continue
        names = header[1:]
        for cells in body:
            field = measures.get(cells[0].lower())
            if field is None:
                continue
            for name, value in zip(names, cells[1:], strict=False):
                number = re.match(r"[\d.,]+", value.strip())
                if number:
                    found.setdefault(name, {"type": name})[field] = float(number.group(0).replace(",", ""))
    return _need(list(found.values()), "quantization types", "llama-quantize")


def quantize_options(pages: dict[str, str]) -> list[Row]:
    rows = [{"option": m.group(1)} for m in re.finditer(r"^\* `(--[a-z0-9-]+)", pages["llama-quantize"], re.MULTILINE)]
    return _need(_dedupe(rows, "option"), "llama-quantize options", "llama-quantize")


# --- GGUF specification ----------------------------------------------------------------------

def ggml_types(pages: dict[str, str]) -> list[Row]:
    rows = []
    for line in pages["gguf-spec"].splitlines():
        match = re.match(r"^\s*GGML_TYPE_(\w+)\s*=\s*(\d+)", line)
        if match and match.group(1) != "COUNT":
            rows.append({"name": match.group(1), "id": int(match.group(2))})
    return _need(_dedupe(rows, "name"), "ggml tensor types", "gguf-spec")


def gguf_file_types(pages: dict[str, str]) -> list[Row]:
    rows = []
    for match in re.finditer(r"^\s*- `((?:ALL|MOSTLY)_\w+) = (\d+)`(.*)$", pages["gguf-spec"], re.MULTILINE):
        rows.append({"name": match.group(1), "id": int(match.group(2)), "removed": "removed" in match.group(3)})
    return _need(rows, "GGUF file types", "gguf-spec")


def gguf_keys(pages: dict[str, str]) -> list[Row]:
    text = pages["gguf-spec"]
    start = text.find("## Standardized key-value pairs")
    end = text.find("## Standardized tensor names")
    if start < 0:
        return _need([], "GGUF metadata keys", "gguf-spec")
    rows, heading = [], ""
    for line in strip_fences(text[start:end if end > start else None]).splitlines():
        head = re.match(r"^#{3,6}\s+(.*)$", line)
        if head:
            heading = head.group(1).strip()
            continue
        match = re.match(r"^\s*- (\*\*)?`([\w.\[\]{}]+)\s*:\s*([\w\[\]]+)`", line)
        if match:
            rows.append({"key": match.group(2), "type": match.group(3), "required": bool(match.group(1)), "section": heading})
    return _need(_dedupe(rows, "key"), "GGUF metadata keys", "gguf-spec")


# --- Ollama server environment ---------------------------------------------------------------

_ENV_NAME = re.compile(r"\b(OLLAMA_[A-Z_]+[A-Z]|CUDA_VISIBLE_DEVICES|HIP_VISIBLE_DEVICES|ROCR_VISIBLE_DEVICES|GGML_VK_VISIBLE_DEVICES|HSA_OVERRIDE_GFX_VERSION|HTTPS_PROXY)\b")
# Defaults stated in prose rather than next to the variable: (variable, pattern, how we write the value).
_ENV_DEFAULT_RULES: list[tuple[str, str, Callable[[re.Match[str]], str]]] = [
    ("OLLAMA_HOST", r"binds (\d+\.\d+\.\d+\.\d+) port (\d+) by default", lambda m: f"{m.group(1)}:{m.group(2)}"),
    ("OLLAMA_CONTEXT_LENGTH", r"context window size of (\d+) tokens", lambda m: f"{m.group(1)} (FAQ; see the VRAM tiers)"),
    ("OLLAMA_KEEP_ALIVE", r"kept in memory for (\d+) minutes", lambda m: f"{m.group(1)}m"),
    ("OLLAMA_MAX_LOADED_MODELS", r"default is (\d+) \\?\* the number of GPUs or (\d+) for CPU", lambda m: f"{m.group(1)} x GPU count ({m.group(2)} on CPU)"),
    ("OLLAMA_NUM_PARALLEL", r"OLLAMA_NUM_PARALLEL` -[^\n]*?default (\d+)", lambda m: m.group(1)),
    ("OLLAMA_MAX_QUEUE", r"OLLAMA_MAX_QUEUE` -[^\n]*?default is (\d+)", lambda m: m.group(1)),
    ("OLLAMA_KV_CACHE_TYPE", r"OLLAMA_KV_CACHE_TYPE` -[^\n]*?Default is `(\w+)`", lambda m: m.group(1)),
    ("OLLAMA_FLASH_ATTENTION", r"uses Flash Attention (automatically)", lambda m: "auto (on where the backend supports it)"),
    ("OLLAMA_MODELS", r"- Linux: `([^`]+)`", lambda m: f"Linux service: {m.group(1)}"),
]
_ENV_PAGES = ("ollama-faq", "ollama-context-length", "ollama-gpu", "ollama-troubleshooting", "ollama-import")


def ollama_environment(pages: dict[str, str]) -> list[Row]:
    rows: dict[str, Row] = {}
    for page in _ENV_PAGES:
        for name in _ENV_NAME.findall(pages.get(page, "")):
            rows.setdefault(name, {"name": name, "default": None, "pages": []})
            if page not in rows[name]["pages"]:
                rows[name]["pages"].append(page)
    everything = "\n".join(pages.get(p, "") for p in _ENV_PAGES)
    for name, pattern, render in _ENV_DEFAULT_RULES:
        match = re.search(pattern, everything)
        if match and name in rows:
            rows[name]["default"] = render(match)
    return _need(sorted(rows.values(), key=lambda r: r["name"]), "server environment variables", "ollama-faq")


def ollama_context_tiers(pages: dict[str, str]) -> list[Row]:
    text = pages["ollama-context-length"].replace("&gt;", ">").replace("&lt;", "<")
    rows = [{"vram": m.group(1).strip(), "default_context": m.group(2)} for m in re.finditer(r"^\s*- ([^:\n]*VRAM): (\S+) context", text, re.MULTILINE)]
    return _need(rows, "context-length tiers", "ollama-context-length")


def kv_cache_types(pages: dict[str, str]) -> list[Row]:
    text = pages["ollama-faq"]
    start = text.find("K/V cache quantization types")
    rows = []
    for match in re.finditer(r"^- `(\w+)` - (.*)$", text[start:] if start >= 0 else "", re.MULTILINE):
        share = re.search(r"approximately (1/\d+)", match.group(2))
        rows.append({"type": match.group(1), "memory_vs_f16": share.group(1) if share else "1", "default": "(default)" in match.group(2)})
    return _need(rows, "K/V cache types", "ollama-faq")


# --- llama.cpp server and bench ---------------------------------------------------------------

def llama_server_options(pages: dict[str, str]) -> list[Row]:
    rows = []
    for header, body in tables(pages["llama-server"]):
        if [h.lower() for h in header[:2]] != ["argument", "explanation"]:
            continue
        for cells in body:
            flags = unmark(cells[0])
            text = cells[1] if len(cells) > 1 else ""
            default = re.search(r"\(default: ([^)]*?)\)", text) or re.search(r"default: '([^']*)'", text)
            env = re.search(r"\(env: ([A-Z0-9_]+)\)", text)
            allowed = re.search(r"allowed values: ([^<]+)", text)
            rows.append({
                "flags": flags, "env": env.group(1) if env else None,
                "default": unmark(default.group(1)).strip("'") if default else None,
                # sorted: a set of names, and not a verbatim run of the upstream text
                "allowed": sorted(v.strip() for v in unmark(allowed.group(1)).split(",")) if allowed else None,
            })
    return _need(_dedupe(rows, "flags"), "llama-server options", "llama-server")


def llama_server_endpoints(pages: dict[str, str]) -> list[Row]:
    rows = []
    for match in re.finditer(r"^###\s+(?:\*\*)?(GET|POST|DELETE)(?:\*\*)?\s+`([^`]+)`", pages["llama-server"], re.MULTILINE):
        rows.append({"endpoint": f"{match.group(1)} {match.group(2)}"})
    return _need(_dedupe(rows, "endpoint"), "llama-server endpoints", "llama-server")


def llama_bench_options(pages: dict[str, str]) -> list[Row]:
    rows = []
    for block in code_blocks(pages["llama-bench"]):
        if "usage: llama-bench" not in block:
            continue
        for line in block.splitlines():
            match = re.match(r"^\s{2}(-[^\s<]+(?:,? -[^\s<]+)*)(?:\s+(<[^>]*>))?.*?\(default: ([^)]*)\)", line)
            if match:
                rows.append({"flags": match.group(1).rstrip(","), "value": match.group(2), "default": match.group(3).strip() or None})
    return _need(_dedupe(rows, "flags"), "llama-bench options", "llama-bench")


def json_safe(rows: list[Row]) -> list[Row]:
    safe: list[Row] = json.loads(json.dumps(rows))
    return safe
