"""A merge measured against each of its inputs on the user's eval set (`merge --eval-set EVALS.jsonl`).

The merge and each input are served in turn on the embedded engine (their f16 GGUFs, exported once for the built-in
comparison too: checkpoint/merge_quality.exported) under a temporary name, never beside the user's models on the
gateway, and asked every case greedily, as `eval` asks two versions (lifecycle/eval_ask.py). Per input the pass rates
per check kind and the reference agreement are compared as `eval` compares them (lifecycle/evals.quality_comparisons):
the merge is the candidate, the input the baseline, each measure with its interval and a verdict.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from model_serving.jobs import Progress
from model_serving.lifecycle.eval_ask import Asked, ask
from model_serving.lifecycle.eval_report import CaseResult, overall
from model_serving.lifecycle.eval_targets import EvalTarget
from model_serving.lifecycle.evals import quality_comparisons
from model_serving.lifecycle.evalset import EvalCase, check
from model_serving.settings import Settings

MAX_TOKENS = 64  # as `eval`'s default
SEED = 0
CTX_SIZE = 2048


class InputEval(BaseModel):
    """The merge (candidate) against one input (baseline) on the user's eval set."""

    input_path: str
    verdict: str = Field(description="better, worse or not distinguishable: the merge judged against this input")
    comparisons: list[dict[str, Any]] = Field(description="Per measure: both figures with intervals, the paired difference, a verdict")
    summary: str


@contextlib.contextmanager
def _served(settings: Settings, gguf: Path, name: str) -> Iterator[EvalTarget]:
    from model_serving.serve.embedded.engine import start_model, stop_model

    model = start_model(settings, gguf, name, ctx_size=CTX_SIZE, parallel=1)
    try:
        yield EvalTarget(ref=name, served_as=name, base_url=model.base_url, engine="embedded", source=str(gguf), ctx_size=CTX_SIZE,
                         parallel=1, pid=model.pid, engine_build=model.engine_build)
    finally:
        stop_model(settings, name)


def _answers(settings: Settings, gguf: Path, name: str, cases: list[EvalCase], progress: Progress) -> list[Asked]:
    progress.update(0.0, f"serving {gguf.name} to ask {len(cases)} case(s)")
    with _served(settings, gguf, name) as target, httpx.Client() as client:
        out = []
        for index, case in enumerate(cases):
            progress.update((index + 1) / (len(cases) + 1), f"{name}: case {index + 1}/{len(cases)} ({case.id})")
            out.append(ask(client, target, case, max_tokens=MAX_TOKENS, seed=SEED))
        return out


def _checked(case: EvalCase, asked: Asked) -> tuple[bool | None, float | None]:
    if asked.error is not None:  # an answer that never came fails its case, as in `eval`
        return (False, None) if case.kind != "reference" else (None, 0.0)
    return check(case, asked.text)


def _results(cases: list[EvalCase], merged: list[Asked], baseline: list[Asked]) -> list[CaseResult]:
    out = []
    for case, m, b in zip(cases, merged, baseline, strict=True):
        (mp, ms), (bp, bs) = _checked(case, m), _checked(case, b)
        out.append(CaseResult(id=case.id, kind=case.kind, candidate_answer=m.text[:400], baseline_answer=b.text[:400], candidate_passed=mp,
                              baseline_passed=bp, candidate_score=ms, baseline_score=bs, candidate_error=m.error, baseline_error=b.error))
    return out


def against_inputs(settings: Settings, merged_gguf: Path, inputs: list[tuple[Path, Path]], cases: list[EvalCase],
                   progress: Progress) -> list[InputEval]:
    """The merge against each (input folder, its GGUF) on `cases`; one engine at a time, each stopped after its answers."""
    name = f"merge-eval-{os.getpid()}"
    share = 1.0 / (len(inputs) + 1)
    merged = _answers(settings, merged_gguf, name, cases, progress.span(0.0, share))
    out = []
    for i, (source, gguf) in enumerate(inputs):
        baseline = _answers(settings, gguf, f"{name}-{i}", cases, progress.span(share * (i + 1), share * (i + 2)))
        comparisons = quality_comparisons(cases, _results(cases, merged, baseline))
        verdict = overall(comparisons, "quality")
        shown = "; ".join(f"{c.measure} {c.verdict}" for c in comparisons)
        out.append(InputEval(input_path=str(source), verdict=verdict, comparisons=[c.model_dump(mode="json") for c in comparisons],
                             summary=f"merge vs {source.name} on {len(cases)} case(s): {verdict} ({shown})"))
    return out
