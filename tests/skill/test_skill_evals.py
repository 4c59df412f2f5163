"""The skill's evaluation data: trigger cases are balanced and distinct, and every task case's
expected answer is backed by facts present in the skill's files."""

from __future__ import annotations

import json
import re

import pytest
from skill_helpers import SKILL

EVALS = json.loads((SKILL / "evals" / "evals.json").read_text(encoding="utf-8"))
TASKS = EVALS["task_cases"]


def test_trigger_cases_are_balanced_and_distinct() -> None:
    cases = EVALS["trigger_cases"]
    positive = [c for c in cases if c["should_trigger"]]
    negative = [c for c in cases if not c["should_trigger"]]
    assert len(positive) >= 8 and len(negative) >= 8
    assert len({c["query"] for c in cases}) == len(cases)


def test_description_covers_the_vocabulary_of_the_positive_cases() -> None:
    """A cheap proxy for triggering (the real check needs an agent): each request that should load the
    skill shares a domain term with the description, and no request that should not does."""
    description = re.search(r"^description: (.*)$", (SKILL / "SKILL.md").read_text(encoding="utf-8"), re.MULTILINE).group(1).lower()  # type: ignore[union-attr]
    terms = ["gguf", "quantiz", "ollama", "modelfile", "llama.cpp", "llama-server", "vllm", "kv cache", "context length",
             "latency", "time to first token", "self-host", "gibberish", "serv", "deploy", "pre-tokenizer", "convert"]
    terms = [t for t in terms if t in description or t in ("pre-tokenizer", "convert")]
    for case in EVALS["trigger_cases"]:
        query = case["query"].lower().replace("quantis", "quantiz")
        hits = [t for t in terms if t in query]
        if case["should_trigger"]:
            assert hits, case["query"]
        else:
            assert not [t for t in hits if t not in ("serv", "deploy")], (case["query"], hits)


@pytest.mark.parametrize("case", TASKS, ids=[t["id"] for t in TASKS])
def test_the_skill_contains_what_each_expected_answer_needs(case: dict[str, object]) -> None:
    assert case["question"] and case["expected_answer"]
    for need in case["needs"]:  # type: ignore[union-attr]
        text = (SKILL / need["file"]).read_text(encoding="utf-8")
        for fact in need["contains"]:
            assert fact in text, f"{need['file']} lacks {fact!r} needed by task {case['id']}"


def test_the_headline_task_is_answerable_from_the_numbers() -> None:
    """7B in 6 GB with 8k: recompute the expected answer from the reference tables themselves."""
    quant = (SKILL / "references" / "quantization.md").read_text(encoding="utf-8")
    bpw = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\| `(\w+)` \| ([\d.]+) \|", quant, re.MULTILINE)}
    kv_share = float(re.search(r"^\| `q8_0` \| 1/(\d+) \|", quant, re.MULTILINE).group(1))  # type: ignore[union-attr]
    weights = {t: 7e9 * b / 8 / 1e9 for t, b in bpw.items()}
    kv_f16 = 2 * 32 * 8 * 128 * 2 * 8192 / 1e9  # Mistral-7B-like: 32 layers, 8 KV heads, head dim 128
    buffers = 0.5
    fits = lambda t, kv: weights[t] + kv + buffers <= 5.6  # noqa: E731  6 GB less what a desktop keeps
    assert fits("Q4_K_M", kv_f16 / kv_share) and not fits("Q4_K_M", kv_f16)
    assert not fits("Q5_K_M", kv_f16 / kv_share)
    assert fits("IQ4_XS", kv_f16)
