"""End to end on a real model: SmolLM2-135M deployed at Q8_0 on the embedded engine, checked against f16."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from model_serving.deploy.pipeline import deploy
from model_serving.quantize.quantizer import quantize_gguf
from model_serving.requests import DeployRequest
from model_serving.serve.embedded.engine import list_models, start_model, stop_model
from model_serving.settings import Settings

PROMPTS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "What do bees make?",
    "How many legs does a spider have?",
    "What is the opposite of hot?",
    "Which planet do we live on?",
]


def greedy(base_url: str, name: str, prompt: str) -> dict:
    reply = httpx.post(f"{base_url}/v1/chat/completions", timeout=120,
                       json={"model": name, "messages": [{"role": "user", "content": prompt}], "max_tokens": 48, "temperature": 0})
    reply.raise_for_status()
    return reply.json()["choices"][0]


@pytest.mark.slow
def test_deploy_smollm2_q8_0_end_to_end(settings: Settings, artifacts: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    result = deploy(settings, DeployRequest(quant="Q8_0", out_dir=str(out), bench_requests=8))
    try:
        assert [s.step for s in result.steps] == ["prepare", "export", "quantize", "register", "bench"]
        # The bench swept concurrency from 1 (up to 8, or one level past the knee) and judged the verdicts at the knee or best level.
        bench = {s.step: s for s in result.steps}["bench"].summary
        assert bench["levels"][0] == 1 and set(bench["levels"]) <= {1, 2, 4, 8} and len(bench["levels"]) >= 2
        assert bench["concurrency"] in bench["levels"]
        assert bench["summary"]["max_concurrent_requests"] == bench["concurrency"]
        assert bench["summary"]["completed"] == max(8, 2 * bench["concurrency"])
        assert set(bench["target_levels"]) >= {"ttft_ms", "e2e_ms", "request_throughput"}
        assert all(set(levels) <= set(bench["levels"]) for levels in bench["target_levels"].values())
        assert Path(bench["files"]["sweep_png"]).stat().st_size > 0  # latency and throughput against concurrency
        assert result.answer and result.answer.strip()
        assert result.quality and result.quality["verdict"] in ("ok", "degraded")
        # Q8_0 changes some answers a few tokens in (the report shows it: agreement_rate counts whole answers),
        # but most of each answer, and every right answer, survives.
        assert 0.0 < result.quality["agreement_rate"] <= 1.0
        assert result.quality["early_agreement_rate"] >= 0.5  # the first tokens of most answers agree
        assert result.quality["answers_lost"] <= 1
        assert {v["target"] for v in result.verdicts} >= {"ttft_ms", "e2e_ms", "memory_gb"}
        manifest = json.loads(Path(result.manifest_path).read_text(encoding="utf-8"))
        assert len(manifest["artifacts"]["served"]["sha256"]) == 64
        assert len(manifest["artifacts"]["source"]["sha256"]) == 64  # the checkpoint the export read
        assert manifest["settings"]["bench_requests"] == 8 and manifest["settings"]["quant"] == "Q8_0"
        assert {"llama-cpp-python", "gguf"} <= set(manifest["tool_versions"])

        served = {m.name: m for m in list_models(settings)}[result.name]
        f16 = Path(manifest["artifacts"]["f16"]["path"])
        reference = start_model(settings, f16, "smol-f16", ctx_size=1024, parallel=2)
        try:
            agree = stopped = ref_stopped = 0
            for prompt in PROMPTS:
                q8, ref = greedy(served.base_url, result.name, prompt), greedy(reference.base_url, "smol-f16", prompt)
                assert q8["message"]["content"].strip(), prompt
                stopped += q8["finish_reason"] == "stop"
                ref_stopped += ref["finish_reason"] == "stop"
                agree += q8["message"]["content"].split()[:5] == ref["message"]["content"].split()[:5]
            # A 135M model decoding greedily loops on some prompts whatever the precision (the first token is a
            # near tie that flash attention alone can flip); quantization must not make that worse.
            assert stopped >= ref_stopped - 1, f"Q8_0 stopped on {stopped}/{len(PROMPTS)} prompts, f16 on {ref_stopped}"
            assert agree > len(PROMPTS) // 2, f"Q8_0 and f16 answers start alike on only {agree}/{len(PROMPTS)} prompts"
        finally:
            stop_model(settings, "smol-f16")

        # The same deploy again only re-registers: the plan says so, and export and quantize reuse their outputs by content hash.
        again = DeployRequest(quant="Q8_0", out_dir=str(out), bench=False, replace=True)
        planned = {s.step: s.action for s in deploy(settings, again.model_copy(update={"plan": True})).plan}
        assert planned == {"prepare": "reuse", "export": "reuse", "quantize": "reuse", "register": "run", "bench": "skip", "manifest": "run"}
        redone = deploy(settings, again)
        assert {s.step: s.status for s in redone.steps} == {"prepare": "reused", "export": "reused", "quantize": "reused", "register": "done"}

        # The quality report ranks a 4-bit quantization below Q8_0 by perplexity.
        q4 = quantize_gguf(settings, f16, out / "q4.gguf", "Q4_K_M")
        q8 = quantize_gguf(settings, f16, Path(manifest["artifacts"]["served"]["path"]), "Q8_0")
        assert q4.quality and q8.quality
        assert q4.quality.candidate.perplexity > q8.quality.candidate.perplexity
    finally:
        for model in list_models(settings):
            stop_model(settings, model.name)


@pytest.mark.slow
def test_deploy_targets_ollama_when_it_answers(ollama_settings: Settings, ollama_double, smollm2_gguf: Path, tmp_path: Path) -> None:
    # target "auto" picks Ollama because a server answers at OLLAMA_HOST (the test double, real inference)
    # concurrency 1: the double answers one request at a time and queues none (a real Ollama queues them)
    result = deploy(ollama_settings, DeployRequest(source=str(smollm2_gguf), name="smol", quant="F16", out_dir=str(tmp_path / "d"),
                                                   bench_requests=3, concurrency=1))
    assert result.target == "ollama" and "Ollama answers" in result.target_reason
    assert [s.step for s in result.steps] == ["register", "bench"]
    assert result.answer and result.answer.strip()
    assert result.endpoint and result.endpoint.endswith("/api/chat")
    bench = {s.step: s for s in result.steps}["bench"].summary["summary"]
    assert bench["completed"] == 3
    manifest = json.loads(Path(result.manifest_path).read_text(encoding="utf-8"))
    assert manifest["target"] == "ollama"
    assert manifest["artifacts"]["served"] == manifest["artifacts"]["source"]  # served as it is
    assert list_models(ollama_settings) == []  # nothing was started on the embedded engine
