"""`eval` on real served models: SmolLM2-135M (the bundled Q4_1) against a tiny random Llama with the same tokenizer.

The two answer differently (one is a trained chat model, the other random weights), so the comparison has something to
find; a version against itself must find nothing. The eval set is generated here, and every number of the report is
recomputed from the answers it lists.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from cli_runner import cli_in_process
from mcp import Client
from quant_helpers import cancel_on_message

from model_serving.errors import Cancelled
from model_serving.lifecycle import intervals
from model_serving.lifecycle.evals import run_eval
from model_serving.lifecycle.evalset import check, load_eval_set
from model_serving.mcp.server import create_server
from model_serving.quantize.quality import default_text
from model_serving.requests import EvalRequest
from model_serving.serve.embedded import engine
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(smollm2_gguf: Path, tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("eval-home")
    settings = Settings(home=home, roots=[home, smollm2_gguf.parent, tiny_gguf.parent])
    started = []
    try:
        for gguf, name in ((smollm2_gguf, "smol"), (tiny_gguf, "tiny")):
            started.append(engine.start_model(settings, gguf, name, ctx_size=1024, parallel=1).name)
        yield settings
    finally:
        for name in started:
            engine.stop_model(settings, name)


def generated_set(path: Path) -> Path:
    """Arithmetic (contains), facts (regex), one-word replies (expected) and sentences to echo (reference)."""
    rng = random.Random(23)
    lines: list[dict[str, object]] = []
    for _ in range(8):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        lines.append({"prompt": f"What is {a} plus {b}? Answer with the number.", "contains": str(a + b)})
    for question, word in (("What is the capital of France?", "Paris"), ("Which planet is the largest?", "Jupiter"),
                           ("Who wrote Romeo and Juliet?", "Shakespeare")):
        lines.append({"prompt": question, "regex": rf"(?i)\b{word}\b"})
    for word in ("yes", "no"):
        lines.append({"prompt": f"Reply with exactly the word {word} and nothing else.", "expected": word, "max_tokens": 4})
    for sentence in ("The sun rises in the east.", "Water freezes at zero degrees Celsius.", "Cats are small animals."):
        lines.append({"id": sentence[:12], "prompt": f"Repeat this sentence exactly: {sentence}", "reference": sentence})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def eval_files(served: Settings, tmp_path: Path) -> tuple[Settings, Path, Path]:
    settings = Settings(home=served.home, roots=[*served.roots, tmp_path])
    text = tmp_path / "text.txt"
    text.write_text(default_text()[:3000], encoding="utf-8")
    return settings, generated_set(tmp_path / "evals.jsonl"), text


def test_the_reports_numbers_follow_from_its_answers(eval_files: tuple[Settings, Path, Path]) -> None:
    settings, evals, text = eval_files
    req = EvalRequest(name="tiny", against="smol", set=str(evals), text=str(text), max_tokens=24, bench_requests=4)
    report = run_eval(settings, req)
    cases = {c.id: c for c in load_eval_set(evals)}
    assert report.cases_total == len(cases) == len(report.cases) and report.cases_by_kind == {"contains": 8, "regex": 3, "expected": 2, "reference": 3}
    assert report.candidate.served_as == "tiny" and report.baseline.source and report.baseline.source.endswith(".gguf")
    assert report.settings_differ == []  # same engine, context and slots
    for row in report.cases:  # each verdict on a case is the check applied to the answer shown
        assert row.candidate_error is None and row.baseline_error is None
        assert check(cases[row.id], row.candidate_answer) == (row.candidate_passed, row.candidate_score)
        assert check(cases[row.id], row.baseline_answer) == (row.baseline_passed, row.baseline_score)
    assert any(r.candidate_answer != r.baseline_answer for r in report.cases)
    by_measure = {c.measure: c for c in report.comparisons}
    for kind in ("contains", "regex", "expected"):
        rows, c = [r for r in report.cases if r.kind == kind], by_measure[f"pass rate: {kind}"]
        cand, base = sum(bool(r.candidate_passed) for r in rows), sum(bool(r.baseline_passed) for r in rows)
        assert (c.candidate.value, c.baseline.value) == (round(cand / len(rows), 4), round(base / len(rows), 4))
        assert c.candidate.interval == [round(v, 4) for v in intervals.wilson(cand, len(rows))]
        only_c = sum(bool(r.candidate_passed) and not r.baseline_passed for r in rows)
        only_b = sum(bool(r.baseline_passed) and not r.candidate_passed for r in rows)
        assert c.p_value == round(intervals.mcnemar_exact(only_c, only_b), 5) and c.verdict == intervals.mcnemar_verdict(only_c, only_b)[0]
    f1 = by_measure["reference agreement (token F1)"]
    scores = [r.candidate_score or 0.0 for r in report.cases if r.kind == "reference"]
    assert f1.candidate.value == round(sum(scores) / len(scores), 4) and f1.candidate.n == 3
    ppl = by_measure["perplexity on text.txt"]  # random weights against a trained model on the same tokens: far worse
    assert ppl.verdict == "worse" and ppl.difference_interval is not None and ppl.difference_interval[0] > 1.0
    assert ppl.candidate.value is not None and ppl.baseline.value is not None and ppl.candidate.value > ppl.baseline.value
    assert report.candidate_bench is not None and report.baseline_bench is not None
    assert report.candidate_bench.completed == report.baseline_bench.completed == 4
    assert {c.measure for c in report.comparisons if c.family == "bench"} == {"bench: TTFT ms (mean)", "bench: end-to-end ms (mean)"}
    assert report.quality_verdict == "worse" and report.promote is False and "keep the live version" in report.decision


def test_a_version_against_itself_is_not_distinguishable(eval_files: tuple[Settings, Path, Path]) -> None:
    settings, evals, text = eval_files
    # bench left out: its verdict on one engine against itself would be a timing assertion on a shared machine
    report = run_eval(settings, EvalRequest(name="smol", against="smol", set=str(evals), text=str(text), max_tokens=24, bench_requests=0))
    assert [c.verdict for c in report.comparisons] == ["not distinguishable"] * 5
    assert all(c.difference == (1.0 if c.measure.startswith("perplexity") else 0.0) for c in report.comparisons)
    assert report.quality_verdict == "not distinguishable" and report.bench_verdict == "not measured" and report.promote


def test_both_faces_give_the_same_report(served: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    roots = [a for r in served.roots for a in ("--root", str(r))]
    code, out, err = cli_in_process(capsys, "--json", *roots, "--home", str(served.home), "eval", "tiny", "--against", "smol",
                                    "--max-tokens", "16", "--bench-requests", "0")
    assert code == 0, err
    from_cli = json.loads(out)

    async def over_mcp() -> dict[str, object]:
        async with Client(create_server(served)) as client:
            job = (await client.call_tool("eval_versions", {"name": "tiny", "against": "smol", "max_tokens": 16, "bench_requests": 0})).structured_content
            while job["status"] == "working":
                job = (await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})).structured_content
            assert job["status"] == "completed", job
            return job["result"]  # type: ignore[no-any-return]

    from_mcp = anyio.run(over_mcp)
    assert from_cli["eval_set"].startswith("built-in") and from_cli["cases_total"] == 9
    assert from_mcp["comparisons"] == from_cli["comparisons"] and from_mcp["cases"] == from_cli["cases"]


def test_a_cancel_stops_between_cases(served: Settings) -> None:
    req = EvalRequest(name="tiny", against="smol", max_tokens=16, bench_requests=0)
    error = cancel_on_message(lambda progress: run_eval(served, req, progress), "case 2/")
    assert isinstance(error, Cancelled)
