"""`eval NAME --against REF`: two served versions asked the same cases, measured side by side, with a verdict.

Both versions are asked every case of the set greedily (temperature 0, top-k 1, the same seed and max_tokens), each on
its own engine; the answers are checked (lifecycle/evalset.py), and per check kind the pass rates are compared (Wilson
intervals, McNemar's exact test), reference agreement by token F1 (paired bootstrap), perplexity on the user's text
where the engine's GGUF allows it, and a short run of our bench against each at the same concurrency (per-request TTFT
and end-to-end latency, paired by request: both runs send the same seeded prompts in the same order). The cancel flag
is checked before every request, so a cancelled job stops within one answer.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from model_serving.bench.runner import run_benchmark
from model_serving.bench.schema import BenchConfig, BenchResult
from model_serving.errors import Cancelled, ServingError
from model_serving.jobs import Progress
from model_serving.lifecycle import eval_report as report
from model_serving.lifecycle.eval_ask import ask
from model_serving.lifecycle.eval_perplexity import score_text
from model_serving.lifecycle.eval_report import BenchFigures, CaseResult, Comparison, EvalReport, Figure
from model_serving.lifecycle.eval_targets import EvalTarget, resolve_target, settings_differ
from model_serving.lifecycle.evalset import PASS_FAIL_KINDS, EvalCase, builtin_set, check, load_eval_set
from model_serving.requests import EvalRequest
from model_serving.settings import Settings
from model_serving.util.paths import confine

BENCH_MAX_TOKENS = 32
ANSWER_SHOWN = 300
SEED = 0  # greedy answers do not depend on it; it fixes the bench's prompts, the same for both versions  # characters of each answer kept in the report's case list


def run_eval(settings: Settings, req: EvalRequest, progress: Progress | None = None) -> EvalReport:
    progress = progress or Progress()
    cases = load_eval_set(confine(req.set, settings.roots, what="eval set")) if req.set else builtin_set()  # a bad line: refused before any work
    text = confine(req.text, settings.roots, what="perplexity text") if req.text else None
    candidate, baseline = resolve_target(settings, req.name), resolve_target(settings, req.against)
    quality_end = 0.6 if req.bench_requests else 0.9
    results = answer_all(candidate, baseline, cases, req, progress.span(0.0, quality_end * (0.8 if text else 1.0)))
    comparisons = quality_comparisons(cases, results)
    if text is not None:
        scores = [score_text(t, text, progress.span(quality_end * (0.8 + 0.1 * i), quality_end * (0.9 + 0.1 * i)))
                  for i, t in enumerate((candidate, baseline))]
        comparisons.append(report.perplexity(scores[0], scores[1], text.name))
    benches: list[BenchResult | None] = [None, None]
    if req.bench_requests:
        benches, lost = bench_both(candidate, baseline, req, progress.span(quality_end, 1.0))
        comparisons += bench_comparisons(benches[0], benches[1]) if lost is None else [lost]
    return build_report(candidate, baseline, cases, results, comparisons, benches, req)


def bench_both(candidate: EvalTarget, baseline: EvalTarget, req: EvalRequest, progress: Progress) -> tuple[list[BenchResult | None], Comparison | None]:
    """Both short bench runs; a bench that cannot run is a bench measure not taken, not the loss of the quality results."""
    try:
        return [bench_version(t, req, progress.span(i / 2, (i + 1) / 2)) for i, t in enumerate((candidate, baseline))], None
    except Cancelled:
        raise
    except ServingError as exc:
        return [None, None], Comparison(measure="bench", family="bench", candidate=Figure(), baseline=Figure(), verdict="not measured",
                                        method="a short run of the bench against each version", note=f"the bench could not run: {exc.cause}")


def answer_all(candidate: EvalTarget, baseline: EvalTarget, cases: list[EvalCase], req: EvalRequest, progress: Progress) -> list[CaseResult]:
    """Each case asked of both versions in turn, one progress step per case."""
    results = []
    with httpx.Client() as client:
        for index, case in enumerate(cases):
            progress.update(index / len(cases), f"case {index + 1}/{len(cases)} ({case.id})")
            got = [ask(client, t, case, max_tokens=req.max_tokens, seed=SEED) for t in (candidate, baseline)]
            checked = [check(case, a.text) if a.error is None else ((False, None) if case.kind != "reference" else (None, 0.0)) for a in got]
            results.append(CaseResult(id=case.id, kind=case.kind, candidate_answer=got[0].text[:ANSWER_SHOWN], baseline_answer=got[1].text[:ANSWER_SHOWN],
                                      candidate_passed=checked[0][0], baseline_passed=checked[1][0], candidate_score=checked[0][1],
                                      baseline_score=checked[1][1], candidate_error=got[0].error, baseline_error=got[1].error))
    progress.update(1.0, f"asked {len(cases)} case(s) of both versions")
    return results


def quality_comparisons(cases: list[EvalCase], results: list[CaseResult]) -> list[Comparison]:
    comparisons = []
    for kind in PASS_FAIL_KINDS:
        mine = [r for r in results if r.kind == kind]
        if mine:
            comparisons.append(report.pass_fail(f"pass rate: {kind}", [bool(r.candidate_passed) for r in mine], [bool(r.baseline_passed) for r in mine]))
    scored = [r for r in results if r.kind == "reference"]
    if scored:
        comparisons.append(report.mean_scores("reference agreement (token F1)", "quality", [r.candidate_score or 0.0 for r in scored],
                                              [r.baseline_score or 0.0 for r in scored], higher_is_better=True))
    return comparisons


def bench_version(target: EvalTarget, req: EvalRequest, progress: Progress) -> BenchResult:
    """A short run of the bench: the same seeded chat prompts, concurrency and length for each version."""
    config = BenchConfig.build(base_url=target.base_url, model=target.served_as, api="ollama" if target.engine == "ollama" else "openai",
                               n_requests=req.bench_requests, concurrency=req.concurrency,
                               max_tokens=BENCH_MAX_TOKENS, prompt_source="chat", seed=SEED, warmup=1, server_pid=target.pid,
                               engine_build=target.engine_build, route="completions" if target.completions_only else "chat",
                               label=f"eval-{target.served_as.replace(':', '_').replace('@', '_v')}")
    progress.update(0.0, f"bench of {target.ref}: {req.bench_requests} requests at concurrency {req.concurrency}")
    return run_benchmark(config, progress)


def _per_request(result: BenchResult, field: str) -> dict[int, float]:
    return {r.index: float(getattr(r, field)) for r in result.records if not r.warmup and r.status == "ok" and getattr(r, field) is not None}


def bench_comparisons(candidate: BenchResult | None, baseline: BenchResult | None) -> list[Comparison]:
    """TTFT and end-to-end latency per request, paired by request index (the same prompt went to both); lower is better."""
    if candidate is None or baseline is None:
        return []
    out = []
    for field, label in (("ttft_ms", "bench: TTFT ms (mean)"), ("e2el_ms", "bench: end-to-end ms (mean)")):
        c, b = _per_request(candidate, field), _per_request(baseline, field)
        shared = sorted(set(c) & set(b))
        out.append(report.mean_scores(label, "bench", [c[i] for i in shared], [b[i] for i in shared], higher_is_better=False, digits=2))
    return out


def _figures(result: BenchResult | None) -> BenchFigures | None:
    if result is None:
        return None
    s = result.summary
    spread = [round(v, 3) for v in s.request_throughput_ci] if s.request_throughput_ci else None
    return BenchFigures(concurrency=result.config.concurrency, completed=s.completed, failed=s.failed, request_throughput=round(s.request_throughput, 3),
                        request_throughput_interval=spread, median_ttft_ms=s.median_ttft_ms, median_e2el_ms=s.median_e2el_ms, p95_e2el_ms=s.p95_e2el_ms)


def build_report(candidate: EvalTarget, baseline: EvalTarget, cases: list[EvalCase], results: list[CaseResult], comparisons: list[Comparison],
                 benches: list[BenchResult | None], req: EvalRequest) -> EvalReport:
    quality, bench = report.overall(comparisons, "quality"), report.overall(comparisons, "bench")
    promote, decision = report.decide(quality, bench, comparisons)
    listed, truncated = report.listed_cases(results)
    by_kind: dict[str, int] = {}
    for case in cases:
        by_kind[case.kind] = by_kind.get(case.kind, 0) + 1
    fields = {"candidate": candidate, "baseline": baseline, "eval_set": str(Path(req.set).name) if req.set else "built-in quality prompts (quantize/data/quality_prompts.json)",
              "cases_total": len(cases), "cases_by_kind": by_kind, "comparisons": comparisons, "quality_verdict": quality, "bench_verdict": bench,
              "decision": decision, "sampling": f"temperature 0, top_k 1, seed {SEED}, max_tokens {req.max_tokens} (a case's own max_tokens wins), "
                                                "each version on its own engine"}
    return EvalReport(**fields, settings_differ=settings_differ(candidate, baseline), candidate_bench=_figures(benches[0]),
                      baseline_bench=_figures(benches[1]), cases=listed, cases_truncated=truncated, promote=promote,
                      summary=report.summary_line(fields))
