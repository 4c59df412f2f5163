"""`eval NAME@2 --against NAME@live` through the version store: the references resolve to each version's own engine.

Two versions of one name are recorded in the store and served as their engine records (NAME and NAME@2), the second a
tiny random model; on Ollama, as two version tags of one model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model_serving.lifecycle import store
from model_serving.lifecycle.evals import run_eval
from model_serving.requests import EvalRequest
from model_serving.serve.embedded import engine
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def two_versions(smollm2_gguf: Path, tiny_gguf: Path, tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(home=tmp_path / "home", roots=[tmp_path, smollm2_gguf.parent, tiny_gguf.parent])
    started = []
    try:
        for n, gguf in ((1, smollm2_gguf), (2, tiny_gguf)):
            served_as = store.served_as("m", n, "embedded")
            started.append(engine.start_model(settings, gguf, served_as, ctx_size=1024, parallel=1).name)
            store.record_deploy(settings, "m", store.Version(n=n, served_as=served_as, target="embedded", source=str(gguf),
                                                             artifact=str(gguf), created_at=store.now()), live=n == 1)
        yield settings
    finally:
        for name in started:
            engine.stop_model(settings, name)


def test_references_resolve_to_each_versions_engine(two_versions: Settings) -> None:
    report = run_eval(two_versions, EvalRequest(name="m@2", against="m@live", max_tokens=16, bench_requests=0))
    assert (report.candidate.served_as, report.candidate.version) == ("m@2", 2)
    assert (report.baseline.served_as, report.baseline.version) == ("m", 1)
    assert report.candidate.base_url != report.baseline.base_url
    assert report.cases_total == 9 and any(c.candidate_answer != c.baseline_answer for c in report.cases)
    same = run_eval(two_versions, EvalRequest(name="m", against="m@1", max_tokens=16, bench_requests=0))  # bare NAME: the live version
    assert same.candidate.served_as == same.baseline.served_as == "m" and same.quality_verdict == "not distinguishable"


def test_ollama_versions_are_asked_on_ollama(ollama_settings: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    from model_serving.serve.ollama import manage
    from model_serving.serve.register import register

    evals = tmp_path / "evals.jsonl"  # two cases: the double answers in Python, slowly
    evals.write_text('{"prompt": "What is the capital of France?", "contains": "Paris"}\n{"prompt": "Say hi.", "reference": "Hi!"}\n')
    register(ollama_settings, smollm2_gguf, "m:v1", target="ollama")
    manage.copy_model(ollama_settings, "m:v1", "m:v2")  # one model under two version tags: the same answers, nothing to tell apart
    for n in (1, 2):
        store.record_deploy(ollama_settings, "m", store.Version(n=n, served_as=store.served_as("m", n, "ollama"), target="ollama",
                                                                source=str(smollm2_gguf), created_at=store.now()), live=n == 1)
    report = run_eval(ollama_settings, EvalRequest(name="m@2", against="m@live", set=str(evals), max_tokens=12, bench_requests=1))
    assert (report.candidate.engine, report.candidate.served_as, report.baseline.served_as) == ("ollama", "m:v2", "m:v1")
    assert all(c.candidate_error is None and c.baseline_error is None for c in report.cases)
    assert report.quality_verdict == "not distinguishable" and [c.candidate_answer for c in report.cases] == [c.baseline_answer for c in report.cases]
    assert report.candidate_bench is not None and report.candidate_bench.completed == 1  # through Ollama's own API
