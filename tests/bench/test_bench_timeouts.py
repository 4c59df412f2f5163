"""Every limit the bench declares fires: a server that stalls anywhere ends the exchange at the limit.

The scripted server can stall a stream after a few tokens (`mode="stall"`) or never answer chosen
paths (`stall_paths`). Each test sets a 1 s request limit (server-info probes then wait at most that
too) and checks what the bench made of the stall. A limit that did not fire would hang the call: each
one runs on a thread that gets a generous 60 s before the test calls it stuck.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from scripted_server import spawned

from model_serving.bench import BenchConfig, BenchResult, run_benchmark
from model_serving.bench.probe import ollama_cold_load
from model_serving.bench.roofline import model_bytes_from_ollama
from model_serving.errors import InputError, ServingError

FAST = {"ttft_ms": 5, "tpot_ms": 1, "tokens": 6}
LIMIT_S = 1.0


def _ends(fn: Callable[[], Any]) -> Any:
    """fn's result (or its exception, re-raised); fails when fn is still running after 60 s."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the call was still waiting long after its limit"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _bench(url: str, **values: Any) -> BenchResult:
    config = BenchConfig(**{"base_url": url, "model": "scripted", "n_requests": 2, "concurrency": 2, "warmup": 0, "timeout_s": LIMIT_S,
                            **values})
    return _ends(lambda: run_benchmark(config))


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_stream_that_stalls_mid_answer_ends_at_the_request_limit(api: str) -> None:
    with spawned(mode="stall", close_after=2, **FAST) as url:
        result = _bench(url, api=api)
    assert result.incomplete and result.summary.completed == 0
    for record in result.records:
        assert record.status == "incomplete" and record.error_kind == "timeout"
        assert record.first_token_ms is not None  # the two tokens before the stall arrived
        assert "within the 1 s request limit" in (record.error or "")


@pytest.mark.parametrize(("api", "path"), [("openai", "/v1/chat/completions"), ("ollama", "/api/chat")])
def test_a_request_the_server_never_answers_ends_at_the_request_limit(api: str, path: str) -> None:
    with spawned(stall_paths=path, **FAST) as url:
        result = _bench(url, api=api, warmup=1)
    assert result.incomplete and result.summary.completed == 0
    assert len(result.records) == 2 and len(result.warmup_records) == 2
    for record in result.records + result.warmup_records:
        assert record.error_kind == "timeout" and record.first_byte_ms is None


@pytest.mark.parametrize(("api", "path"), [("openai", "/v1/models"), ("ollama", "/api/version")])
def test_a_stalled_first_probe_is_an_input_error_naming_the_limit(api: str, path: str) -> None:
    with spawned(stall_paths=path, **FAST) as url, pytest.raises(InputError) as err:
        _bench(url, api=api)
    assert f"No server answers at {url} (GET {path} got no answer within 1 s)" in err.value.cause
    assert err.value.next_step


def test_a_stalled_model_list_on_ollama_reads_as_no_models() -> None:
    with spawned(stall_paths="/api/tags", **FAST) as url, pytest.raises(InputError) as err:
        _bench(url, api="ollama")
    assert "no model named 'scripted' (it has: none)" in err.value.cause


def test_stalled_slot_probe_leaves_the_server_unknown_and_the_run_goes_on() -> None:
    with spawned(stall_paths="/props", **FAST) as url:
        result = _bench(url)
    assert result.summary.completed == 2
    assert result.server.kind == "unknown" and result.server.total_slots is None


def test_stalled_ollama_ps_after_the_run_leaves_its_memory_figures_out() -> None:
    with spawned(**FAST) as url:
        answered = _bench(url, api="ollama")
    with spawned(stall_paths="/api/ps", **FAST) as url:
        stalled = _bench(url, api="ollama")
    assert answered.server.vram_fraction == 0.0 and answered.server.memory_source == "model size reported by Ollama /api/ps"
    assert stalled.summary.completed == 2
    assert stalled.server.vram_fraction is None and stalled.server.memory_bytes is None


@pytest.mark.parametrize("path", ["/api/show", "/api/tags"])
def test_stalled_ollama_model_facts_give_no_roofline(path: str) -> None:
    with spawned(**FAST) as url:
        assert _ends(lambda: model_bytes_from_ollama(url, "scripted", limit_s=LIMIT_S)) is not None
    with spawned(stall_paths=path, **FAST) as url:
        assert _ends(lambda: model_bytes_from_ollama(url, "scripted", limit_s=LIMIT_S)) is None


def test_a_stalled_unload_before_a_cold_load_is_a_serving_error() -> None:
    with spawned(stall_paths="/api/generate", **FAST) as url, pytest.raises(ServingError) as err:
        config = BenchConfig(base_url=url, model="scripted", api="ollama", timeout_s=LIMIT_S)
        _ends(lambda: ollama_cold_load(config))
    assert "did not answer the request to unload 'scripted' within 1 s" in err.value.cause
    assert err.value.next_step


def test_a_model_that_never_leaves_ollama_ps_is_said_in_the_cold_load_note() -> None:
    # The scripted server answers the unload request but keeps listing the model in /api/ps.
    with spawned(**FAST) as url:
        config = BenchConfig(base_url=url, model="scripted", api="ollama", timeout_s=LIMIT_S)
        load = _ends(lambda: ollama_cold_load(config))
    assert "still listed the model as loaded 1 s after the unload request" in load.note
    assert load.cold_ttft_ms is not None and load.warm_ttft_ms is not None
