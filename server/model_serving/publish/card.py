"""The model card, built with huggingface_hub's ModelCard: only what was measured is claimed; a missing
measurement is written as missing."""

from __future__ import annotations

import re
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from model_serving.util.units import human_size

from .collect import Collected

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
MISSING = "not measured"


def base_model(collected: Collected) -> str | None:
    """The Hub id the deploy started from, when it was one (a local folder is no lineage the Hub can show)."""
    source = str(collected.manifest.get("source") or "")
    return source if REPO_ID.match(source) and not source.startswith(("/", ".")) else None


def _quality(collected: Collected) -> dict[str, Any]:
    return collected.manifest.get("result", {}).get("quality") or {}


def _quant_rows(collected: Collected) -> list[str]:
    q = _quality(collected)
    rows = ["| File | Type | Size | Bits per weight | Quality verdict | Perplexity ratio | Greedy agreement |", "|---|---|---|---|---|---|---|"]
    for up, info, verdict in collected.ggufs:
        measured = verdict not in (None, "unverified")
        ppl = q.get("ppl_ratio") if measured else None
        agree = q.get("agreement_rate") if measured else None
        bpw = f"{info.bits_per_weight:.2f}" if info.bits_per_weight else MISSING
        rows.append(f"| {up.path_in_repo} | {info.file_type} | {human_size(up.size)} | {bpw} | {verdict if measured else MISSING} | "
                    f"{MISSING if ppl is None else f'{ppl:.4f}'} | {MISSING if agree is None else f'{agree:.3f}'} |")
    return rows


def _bench(collected: Collected) -> list[str]:
    verdicts = collected.manifest.get("result", {}).get("verdicts") or []
    if not verdicts:
        return ["No benchmark was recorded for this deploy: latency and throughput are " + MISSING + "."]
    rows = ["| Target | Statistic | Measured | Threshold | State |", "|---|---|---|---|---|"]
    for v in verdicts:
        measured = v.get("measured")
        rows.append(f"| {v.get('target')} | {v.get('statistic')} | {MISSING if measured is None else f'{measured:.4g}'} | {v.get('threshold')} | {v.get('state')} |")
    hardware = collected.manifest.get("hardware")
    rows += ["", f"Hardware: {hardware or 'not recorded in the deploy manifest'}.",
             "Plot: " + ("bench.png" if collected.manifest.get("plot") else "none recorded") + "."]
    return rows


def _provenance(collected: Collected) -> list[str]:
    artifacts = collected.manifest.get("artifacts", {})
    lines = [f"- source: {collected.manifest.get('source') or 'not recorded'} (sha256 {(artifacts.get('source') or {}).get('sha256') or 'not recorded'})"]
    lines += [f"- {up.path_in_repo}: sha256 {up.sha256}" for up, _, _ in collected.ggufs]
    versions = collected.manifest.get("tool_versions") or {}
    lines.append("- tools: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded"))
    return lines


def render_card(collected: Collected, repo: str, *, license_id: str, user: str, broken: bool) -> str:
    """README.md: front matter (base_model, license, tags, ...) and a body of measured facts."""
    info = collected.ggufs[0][1]
    base = base_model(collected)
    data = ModelCardData(license=license_id, tags=["gguf", info.architecture or "unknown"], pipeline_tag="text-generation",
                         library_name="gguf", quantized_by=user, **({"base_model": base, "base_model_relation": "quantized"} if base else {}))
    quant = collected.ggufs[0][0].path_in_repo.rsplit("-", 1)[1].removesuffix(".gguf")
    body = [f"# {collected.model} (GGUF)", "",
            f"Base model: {base or 'not a Hub repo (a local source); lineage not recorded'}.", ""]
    if broken:
        body += ["> **Warning: a quantization here failed its quality check (verdict `broken`); it was published on request.**", ""]
    body += ["## Quantizations", "", *_quant_rows(collected), "", "## Benchmark", "", *_bench(collected), "",
             "## Run it", "", "```", f"ollama run hf.co/{repo}:{quant}", f"llama-server -hf {repo}:{quant}",
             f"model-serving deploy hf.co/{repo}:{quant}", "```", "", "## Provenance", "", *_provenance(collected), ""]
    return str(ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n", body="\n".join(body)))
