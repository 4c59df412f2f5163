"""The model card, built with huggingface_hub's ModelCard: only what was measured is claimed; a missing
measurement is written as missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from model_serving.util.units import human_size

from .collect import Collected

MISSING = "not measured"
_LIBRARY = {"merged": "transformers", "adapter": "peft"}


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else MISSING


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
    lines += [f"- {up.path_in_repo}: sha256 {up.sha256}" for up in [u for u, _, _ in collected.ggufs] + collected.checkpoint]
    merge = collected.lineage.merge
    if merge:
        lines.append(f"- merged from the adapter (tree sha256 {merge.get('adapter_sha256') or 'not recorded'}) and the base "
                     f"(tree sha256 {merge.get('base_sha256') or 'not recorded'})")
    versions = collected.manifest.get("tool_versions") or {}
    lines.append("- tools: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded"))
    return lines


def _merge(collected: Collected) -> list[str]:
    """The logit check the deploy's merge ran: merged model vs base + adapter, on the same prompts."""
    merge = collected.lineage.merge
    if not merge:
        return []
    check = merge.get("verification") or {}
    rows = ["## LoRA merge", "", f"Merged with peft into {merge.get('dtype') or 'a dtype not recorded'}; "
            f"tokenizer from the {merge.get('tokenizer_from') or 'source not recorded'}, chat template from the "
            f"{merge.get('chat_template_from') or 'source not recorded'}.", ""]
    if not check:
        return [*rows, f"Logit check: {MISSING}.", ""]
    return [*rows, "| Check | Measured | Tolerance |", "|---|---|---|",
            f"| merged vs base + adapter (max logit difference / max logit) | {_num(check.get('merged_vs_adapter'), '.2e')} | {check.get('tolerance')} |",
            f"| adapter vs base (the adapter's effect) | {_num(check.get('adapter_vs_base'), '.2e')} | |",
            f"| greedy next-token agreement, merged vs base + adapter | {_num(check.get('top1_agreement'), '.3f')} | |",
            "", f"Passed: {'yes' if check.get('passed') else 'no'} ({check.get('prompts')} prompts).", ""]


def _recipe(collected: Collected) -> list[str]:
    """A mergekit merge's recipe: the config it ran, each input's tree sha256, the mergekit version."""
    recipe = collected.lineage.recipe
    if not recipe:
        return []
    inputs = [f"- {i.get('role', 'model')} {Path(str(i.get('path'))).name}: tree sha256 {i.get('sha256') or 'not recorded'}"
              for i in recipe.get("inputs", []) if isinstance(i, dict)]
    return ["## Merge recipe", "", f"Merged with mergekit {recipe.get('mergekit_version') or '(version not recorded)'}, "
            f"method {recipe.get('method') or 'not recorded'}:", "", "```yaml", str(recipe.get("config", "")).rstrip(), "```", "", *inputs, ""]


def _run(collected: Collected, repo: str, quant: str) -> list[str]:
    lines = ["## Run it", "", "```", f"ollama run hf.co/{repo}:{quant}", f"llama-server -hf {repo}:{quant}",
             f"model-serving deploy hf.co/{repo}:{quant}"]
    include, base = collected.lineage.include, collected.lineage.base_model
    if include == "merged":
        lines.append(f'python -c "from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained(\'{repo}\')"')
    elif include == "adapter":
        lines.append(f"python -c \"from peft import AutoPeftModelForCausalLM; AutoPeftModelForCausalLM.from_pretrained('{repo}')\"  # base: {base}")
    return [*lines, "```", ""]


def _front_matter(collected: Collected, license_id: str, user: str) -> ModelCardData:
    lineage, info = collected.lineage, collected.ggufs[0][1]
    related: dict[str, Any] = {"base_model": lineage.base_model, "base_model_relation": lineage.relation} if lineage.base_model and lineage.relation else {}
    tags = ["gguf", info.architecture or "unknown"] + (["lora"] if lineage.merge else []) + (["merge", "mergekit"] if lineage.recipe else [])
    return ModelCardData(license=license_id, tags=tags, pipeline_tag="text-generation", library_name=_LIBRARY.get(lineage.include or "", "gguf"),
                         quantized_by=user, **related)


def render_card(collected: Collected, repo: str, *, license_id: str, user: str, broken: bool) -> str:
    """README.md: front matter (base_model, license, tags, ...) and a body of measured facts."""
    lineage = collected.lineage
    quant = collected.ggufs[0][0].path_in_repo.rsplit("-", 1)[1].removesuffix(".gguf")
    bases = ", ".join(lineage.base_model) if isinstance(lineage.base_model, list) else lineage.base_model
    origin = (f"{bases} ({lineage.relation})" if bases else "a mergekit merge of local checkpoints (recipe below)" if lineage.recipe
              else "not a Hub repo (a local source); lineage not recorded")
    body = [f"# {collected.model} (GGUF)", "", f"Base model: {origin}.", ""]
    if lineage.include:
        what = "merged Hugging Face checkpoint" if lineage.include == "merged" else "LoRA adapter (peft)"
        body += [f"This repo also holds the {what}: {', '.join(u.path_in_repo for u in collected.checkpoint)}.", ""]
    if broken:
        body += ["> **Warning: a quantization here failed its quality check (verdict `broken`); it was published on request.**", ""]
    body += ["## Quantizations", "", *_quant_rows(collected), "", *_merge(collected), *_recipe(collected), "## Benchmark", "", *_bench(collected), "",
             *_run(collected, repo, quant), "## Provenance", "", *_provenance(collected), ""]
    return str(ModelCard.from_template(_front_matter(collected, license_id, user), template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n",
                                       body="\n".join(body)))
