"""Bad input and misbehaving servers: clear errors, and a partial run still writes what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripted_server import spawned

from model_serving.bench import BenchConfig, run_benchmark
from model_serving.errors import InputError

FAST = {"ttft_ms": 5, "tpot_ms": 1, "tokens": 6}


def test_unreachable_endpoint_names_the_url_and_what_to_do() -> None:
    with pytest.raises(InputError) as err:
        run_benchmark(BenchConfig(base_url="http://127.0.0.1:9", model="m", n_requests=2))
    assert "No server answers at http://127.0.0.1:9" in err.value.cause
    assert "Start it" in err.value.next_step


def test_unknown_model_on_an_openai_server_lists_the_served_ones() -> None:
    with spawned(**FAST) as url, pytest.raises(InputError) as err:
        run_benchmark(BenchConfig(base_url=url, model="nope", n_requests=6, warmup=0))
    assert "refused every request for model 'nope'" in err.value.cause
    assert "HTTP 404" in err.value.cause and "It lists: scripted" in err.value.cause


def test_an_https_endpoint_is_refused_before_sending() -> None:
    with pytest.raises(InputError) as err:
        run_benchmark(BenchConfig(base_url="https://127.0.0.1:9", model="m", n_requests=2))
    assert "only http:// endpoints are supported" in err.value.cause


def test_unknown_model_on_ollama_is_refused_before_sending() -> None:
    with spawned(**FAST) as url, pytest.raises(InputError) as err:
        run_benchmark(BenchConfig(base_url=url, model="nope", api="ollama", n_requests=2))
    assert "no model named 'nope'" in err.value.cause and "scripted:latest" in err.value.cause


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_streams_closed_early_are_incomplete_and_still_reported(api: str, tmp_path: Path) -> None:
    with spawned(mode="close_early", **FAST) as url:
        result = run_benchmark(BenchConfig(base_url=url, model="scripted", api=api, n_requests=4, warmup=0, output_dir=tmp_path))
    assert result.incomplete
    assert result.summary.completed == 0 and result.summary.incomplete_requests == 4
    assert all(r.status == "incomplete" and r.first_token_ms is not None for r in result.records)
    assert all(r.error_kind == "reset" for r in result.records)  # cut before the final chunk
    # Nothing completed, so nothing was measured, but a lost request is a failure: never INCONCLUSIVE, never PASS.
    assert {v.state for v in result.verdicts if v.target in ("ttft_ms", "e2e_ms", "request_throughput", "capacity")} == {"FAIL"}
    assert result.verdicts[0].target == "error_rate" and result.verdicts[0].measured == 1.0
    assert any(f.code == "requests_incomplete" for f in result.findings)
    written = json.loads(Path(result.files["json"]).read_text())
    assert written["model_serving"]["incomplete"] is True
    assert len(Path(result.files["requests_jsonl"]).read_text().splitlines()) == 4


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_empty_completions_never_produce_a_zero_ttft(api: str) -> None:
    with spawned(mode="empty", **FAST) as url:
        result = run_benchmark(BenchConfig(base_url=url, model="scripted", api=api, n_requests=3, warmup=0))
    assert result.incomplete and result.summary.completed == 0
    assert all(r.status == "empty" and r.error_kind == "empty" and r.ttft_ms is None for r in result.records)
    assert result.metrics["ttft_ms"].n == 0
    assert any(f.code == "requests_empty" for f in result.findings)


def test_server_dying_mid_run_stops_the_run_and_keeps_what_was_measured(tmp_path: Path) -> None:
    with spawned(die_after=4, **FAST) as url:
        result = run_benchmark(BenchConfig(base_url=url, model="scripted", n_requests=40, warmup=1, output_dir=tmp_path))
    assert result.incomplete and result.stopped_reason and "in a row failed" in result.stopped_reason
    assert result.summary.completed == 3  # the warmup took one of the four answers
    assert len(result.records) < 40
    # the requests never sent count as failed too
    assert result.summary.failed == 40 - 3 and result.summary.errors_by_cause["not_sent"] == 40 - len(result.records)
    lines = Path(result.files["requests_jsonl"]).read_text().splitlines()
    assert sum(json.loads(line)["status"] == "ok" for line in lines) == 4  # three measured plus the warmup


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": "broken"\n')
    with pytest.raises(InputError) as err:
        run_benchmark(BenchConfig(base_url="http://127.0.0.1:9", model="m", prompt_source="jsonl", prompts_file=bad))
    assert "prompts.jsonl line 2 is not valid JSON" in err.value.cause
    bad.write_text('["a list"]\n')
    with pytest.raises(InputError, match="line 1 is a JSON list"):
        run_benchmark(BenchConfig(base_url="http://127.0.0.1:9", model="m", prompt_source="jsonl", prompts_file=bad))
    bad.write_text('{"text": "wrong key"}\n')
    with pytest.raises(InputError, match="neither a non-empty 'prompt'"):
        run_benchmark(BenchConfig(base_url="http://127.0.0.1:9", model="m", prompt_source="jsonl", prompts_file=bad))


@pytest.mark.parametrize(("values", "message"), [
    ({"concurrency": 0}, "concurrency: Input should be greater than or equal to 1"),
    ({"rate": -2.0}, "rate must be a positive number"),
    ({"rate": 0.0}, "rate must be a positive number"),
    ({"n_requests": 0}, "n_requests"),
    ({"prompt_source": "text"}, "needs a prompt"),
])
def test_invalid_settings_are_one_line_input_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as err:
        BenchConfig.build(base_url="http://127.0.0.1:9", model="m", **values)
    assert message in err.value.cause
    assert "\n" not in err.value.cause


def test_cancelling_a_run_stops_it_and_writes_nothing(tmp_path: Path) -> None:
    import threading

    from model_serving.errors import Cancelled
    from model_serving.jobs import Progress

    progress = Progress()
    outcome: dict[str, BaseException] = {}
    with spawned(ttft_ms=20, tpot_ms=20, tokens=10) as url:
        config = BenchConfig(base_url=url, model="scripted", n_requests=200, warmup=0, output_dir=tmp_path / "out")

        def work() -> None:
            try:
                run_benchmark(config, progress)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc

        thread = threading.Thread(target=work)
        thread.start()
        for _ in range(600):  # until a few requests have finished (30 s at most)
            if progress.fraction >= 0.02 or not thread.is_alive():
                break
            threading.Event().wait(0.05)
        progress.cancel()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), Cancelled)
    assert not (tmp_path / "out").exists()
