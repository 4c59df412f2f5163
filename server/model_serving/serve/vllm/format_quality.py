"""The quality gate for a compressed checkpoint, measured as users will run it: both checkpoints served on vLLM.

The 16-bit source and the compressed checkpoint are served one after the other (never side by side: they would share
the cores) and asked the same things the GGUF gate asks llama.cpp (quantize/quality.py): the perplexity of the same
built-in text in the same 512-token windows, from vLLM's prompt log-probabilities on token ids our tokenizer made, and
greedy answers to the same prompts through the checkpoint's chat template. The two evaluations then go through the GGUF
gate's own `build_report`: one rule, one set of thresholds, the same paired interval. A candidate vLLM cannot start or
answer is a result (broken), a reference that fails is an error.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path
from typing import Any

import httpx

from model_serving.errors import ServingError
from model_serving.jobs import Progress
from model_serving.quantize import quality
from model_serving.serve import registry
from model_serving.serve.vllm.engine import start_vllm
from model_serving.settings import Settings

CTX_SIZE = quality.N_CTX + 64  # a whole window plus the one token vLLM must generate after it
ANSWER_TIMEOUT_S = 300.0
_REFERENCES: dict[tuple[str, int, int], quality.ModelEvaluation] = {}  # a source measured once per process (a benchmark's many formats)


def _post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    reply = client.post("/v1/completions", json=body)
    if reply.status_code != 200:
        raise ServingError(f"vLLM answered HTTP {reply.status_code} to /v1/completions.", "Read the model's log (`model-serving serve list`).",
                           detail=reply.text[:500])
    data: dict[str, Any] = reply.json()
    return data


def _window_nll(choice: dict[str, Any], window: list[int]) -> list[float]:
    """Each token's NLL after the first, from vLLM's prompt log-probabilities (one dict per prompt token, the first None)."""
    rows = choice.get("prompt_logprobs") or []
    out = []
    for token, row in zip(window[1:], rows[1:], strict=False):
        entry = (row or {}).get(str(token))
        logprob = entry.get("logprob") if isinstance(entry, dict) else None
        out.append(-float(logprob) if isinstance(logprob, int | float) and math.isfinite(logprob) else math.inf)
    return out


def _perplexity(client: httpx.Client, name: str, tokens: list[int], check: Any) -> tuple[float | None, list[float], str]:
    nll: list[float] = []
    for start in range(0, len(tokens) - 1, quality.N_CTX):
        check(start / len(tokens))
        window = tokens[start:start + quality.N_CTX]
        choice = _post(client, {"model": name, "prompt": window, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 0})["choices"][0]
        nll += _window_nll(choice, window)
    digest = hashlib.sha256(b"".join(t.to_bytes(8, "little") for t in tokens) + f"/{quality.N_CTX}".encode()).hexdigest()[:16]
    mean = sum(nll) / len(nll) if nll else math.inf
    return (math.exp(min(mean, 700.0)) if math.isfinite(mean) else None), nll, digest


def _prompt_ids(tokenizer: Any, text: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
        return list(tokenizer.encode(rendered, add_special_tokens=False))
    return list(tokenizer.encode(f"Question: {text}\nAnswer:"))  # no template: the GGUF gate's plain frame


def _answers(client: httpx.Client, name: str, tokenizer: Any, prompts: list[quality.QualityPrompt], max_tokens: int,
             check: Any) -> list[quality.Answer]:
    answers = []
    for i, item in enumerate(prompts):
        check(i / len(prompts))
        body = {"model": name, "prompt": _prompt_ids(tokenizer, item.prompt), "max_tokens": max_tokens, "temperature": 0,
                "return_token_ids": True}
        choice = _post(client, body)["choices"][0]
        text = str(choice.get("text") or "").strip()
        answers.append(quality.Answer(prompt=item.prompt, text=text, tokens=[int(t) for t in choice.get("token_ids") or []],
                                      stopped=choice.get("finish_reason") == "stop", correct=quality.is_correct(text, item.expect)))
    return answers


def evaluate_served(base_url: str, name: str, folder: Path, tokenizer_folder: Path, *, max_tokens: int = 24,
                    progress: Progress | None = None) -> quality.ModelEvaluation:
    """Perplexity and greedy answers of the model vLLM serves as `name`, scored on `tokenizer_folder`'s tokens."""
    from transformers import AutoTokenizer

    progress = progress or Progress()
    began = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    tokens = list(tokenizer.encode(quality.default_text()))[:quality.MAX_TEXT_TOKENS]
    with httpx.Client(base_url=base_url, timeout=ANSWER_TIMEOUT_S) as client:
        ppl, nll, digest = _perplexity(client, name, tokens, lambda f: progress.update(0.7 * f, f"perplexity of {folder.name} on vLLM"))
        answers = _answers(client, name, tokenizer, quality.default_prompts(), max_tokens,
                           lambda f: progress.update(0.7 + 0.3 * f, f"greedy answers of {folder.name} on vLLM"))
    graded = [a.correct for a in answers if a.correct is not None]
    return quality.ModelEvaluation(
        path=str(folder), size_bytes=sum(p.stat().st_size for p in folder.glob("*.safetensors")), file_type=_scheme(folder),
        perplexity=ppl, tokens_scored=len(nll), token_nll=[round(x, 5) for x in nll] if ppl is not None else None, tokens_sha256=digest,
        chat_template=bool(getattr(tokenizer, "chat_template", None)), answers=answers, correct=sum(graded) if graded else None,
        eval_s=round(time.perf_counter() - began, 3))


def _scheme(folder: Path) -> str:
    from model_serving.checkpoint.inspect import read_json

    config = read_json(folder / "config.json") or {}
    quant = config.get("quantization_config") if isinstance(config, dict) else None
    if not isinstance(quant, dict):
        return str(config.get("torch_dtype") or config.get("dtype") or "16-bit") if isinstance(config, dict) else "16-bit"
    return str(quant.get("quant_method", "quantized"))


def _why_not_started(settings: Settings, name: str) -> str:
    """The line of vLLM's log that says why it refused the checkpoint (e.g. no CPU kernel for 2-bit weights), or ""."""
    try:
        lines = registry.log_path(settings, name).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    reasons = [line.split("]", 1)[-1].strip() for line in lines if "cannot implement due to" in line or "not supported" in line]
    return "; ".join(dict.fromkeys(reasons))[:400]


def _served_evaluation(settings: Settings, folder: Path, tokenizer_folder: Path, role: str, progress: Progress) -> quality.ModelEvaluation:
    """Serve `folder` on vLLM under a name of its own, evaluate it, and stop it again whatever happens."""
    name = f"gate-{role[:3]}-{os.getpid()}"
    try:
        model = start_vllm(settings, folder, name, ctx_size=CTX_SIZE, parallel=1, replace=True, progress=progress.span(0.0, 0.4))
    except ServingError as exc:
        why = _why_not_started(settings, name)
        raise ServingError(exc.cause + (f" vLLM says: {why}" if why else ""), exc.next_step, detail=exc.detail) from None
    try:
        return evaluate_served(model.base_url, name, folder, tokenizer_folder, progress=progress.span(0.4, 1.0))
    finally:
        registry.stop_model(settings, name)


def measure_on_vllm(settings: Settings, source: Path, candidate: Path, progress: Progress | None = None) -> quality.QualityReport:
    """The compressed `candidate` judged against its 16-bit `source`, both served on vLLM, by the GGUF gate's rule."""
    progress = progress or Progress()
    stat = next(iter(sorted(source.glob("*.safetensors")))).stat()
    key = (str(source), stat.st_size, stat.st_mtime_ns)
    reference = _REFERENCES.get(key)
    if reference is None:
        reference = _served_evaluation(settings, source, source, "reference", progress.span(0.0, 0.5))
        _REFERENCES[key] = reference
    try:
        evaluation = _served_evaluation(settings, candidate, source, "candidate", progress.span(0.5, 1.0))
    except ServingError as exc:  # vLLM cannot load or run it: the format is broken for vLLM, and the report says why
        evaluation = quality.ModelEvaluation(path=str(candidate), size_bytes=0, perplexity=None, tokens_scored=0, chat_template=False,
                                             answers=[], eval_s=0.0, error=f"vLLM could not serve it: {exc.cause}")
    label = f"the 16-bit checkpoint {source.name} on vLLM"
    return quality.build_report(source, candidate, reference, evaluation, label, 24,
                                f"{reference.tokens_scored} tokens of the built-in text (quantize/data/quality_text.txt) scored on vLLM "
                                f"(prompt log-probabilities) in non-overlapping {quality.N_CTX}-token windows")
