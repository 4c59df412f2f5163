"""benchmarks/_peer_evidence.py on recorded outputs: the server's counters per request, and who is wrong from numbers only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _peer_evidence as evidence  # noqa: E402


def test_llama_server_counters_give_sent_prefilled_and_its_own_prefill_and_token_times() -> None:
    before = {"llamacpp:prompt_tokens_total": 1000.0, "llamacpp:prompt_tokens_cached_total": 40.0, "llamacpp:prompt_seconds_total": 2.0,
              "llamacpp:tokens_predicted_seconds_total": 5.0, "llamacpp:tokens_predicted_total": 300.0}
    after = {"llamacpp:prompt_tokens_total": 1000.0 + 13 * 130, "llamacpp:prompt_tokens_cached_total": 40.0 + 13 * 28,
             "llamacpp:prompt_seconds_total": 2.0 + 13 * 0.25, "llamacpp:tokens_predicted_seconds_total": 5.0 + 13 * 16 * 0.02,
             "llamacpp:tokens_predicted_total": 300.0 + 13 * 16}
    got = evidence.server_counters("embedded", before, after, requests=13)
    assert got["available"] and got["requests"] == 13
    assert (got["prompt_tokens_total"], got["prefilled_tokens_total"]) == (13 * 158, 13 * 130)
    assert got["prefilled_share"] == pytest.approx(130 / 158, abs=1e-3)
    assert got["prefill_ms_per_token"] == pytest.approx(250 / 130, abs=1e-3) and got["mean_tpot_ms"] == pytest.approx(20.0)


def test_vllm_counters_and_histograms_count_the_requests_themselves() -> None:
    before = {"vllm:prompt_tokens_total": 0.0, "vllm:prompt_tokens_cached_total": 0.0, "vllm:request_success_total": 1.0,
              "vllm:time_to_first_token_seconds_sum": 0.2, "vllm:time_to_first_token_seconds_count": 1.0,
              "vllm:inter_token_latency_seconds_sum": 1.0, "vllm:inter_token_latency_seconds_count": 63.0}
    after = {"vllm:prompt_tokens_total": 33 * 158.0, "vllm:prompt_tokens_cached_total": 32 * 16.0, "vllm:request_success_total": 33.0,
             "vllm:time_to_first_token_seconds_sum": 0.2 + 32 * 0.21, "vllm:time_to_first_token_seconds_count": 33.0,
             "vllm:inter_token_latency_seconds_sum": 1.0 + 32 * 63 * 0.0185, "vllm:inter_token_latency_seconds_count": 63.0 * 33}
    got = evidence.server_counters("vllm", before, after, requests=999)  # its own request count wins
    assert got["requests"] == 32 and got["prompt_tokens_total"] == 33 * 158
    assert got["prefilled_share"] == pytest.approx(1 - 32 * 16 / (33 * 158), abs=1e-3)
    assert got["mean_ttft_ms"] == pytest.approx(210.0) and got["mean_tpot_ms"] == pytest.approx(18.5)


def test_no_metrics_is_said_not_invented() -> None:
    assert evidence.server_counters("embedded", {}, {}, requests=5) == {"available": False}
    assert evidence.pooled_server([{"server": {"available": False}}]) == {"available": False}


def _client(ttft: float, tpot: float, *, server_ttft: float, server_tpot: float, sent: float = 158.0, rps: float = 2.9,
            cores: float = 0.1, e2el: float = 1370.0) -> dict[str, Any]:
    return {"request_throughput": rps, "median_ttft_ms": ttft, "median_tpot_ms": tpot, "mean_ttft_ms": ttft, "mean_tpot_ms": tpot,
            "mean_e2el_ms": e2el, "mean_input_tokens": sent, "mean_output_tokens": 64.0, "output_tokens_asked": 64, "failed": 0, "client_cores": cores,
            "server": {"available": True, "requests": 64, "prefilled_share": 0.97,
                       "mean_ttft_ms": server_ttft, "mean_tpot_ms": server_tpot}}


def _rows(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    rows = {}
    for m in evidence.METRICS:
        ratio = peer[m] / ours[m]
        rows[m] = {"ours": ours[m], "theirs": peer[m], "ratio": ratio, "within_5_percent": abs(ratio - 1) <= 0.05}
    return rows


def test_the_client_whose_clock_strays_from_the_servers_is_named_with_the_numbers() -> None:
    ours = _client(209.3, 18.6, server_ttft=203.0, server_tpot=18.4)
    peer = _client(238.7, 18.7, server_ttft=204.0, server_tpot=18.5)  # same server time, a later clock
    notes = evidence.who_is_wrong("guidellm", ours, peer, _rows(ours, peer), input_tokens=128, concurrency=4, pinned=True)
    ttft = [n for n in notes if "TTFT" in n]
    assert len(ttft) == 1 and ttft[0].startswith("guidellm is wrong on TTFT")
    assert "203.0" in ttft[0] and "204.0" in ttft[0] and "238.7" in ttft[0] and "34.7 ms" in ttft[0]
    assert not any("None" in n for n in notes)


def test_clients_whose_means_are_the_servers_own_are_not_blamed_when_their_medians_differ() -> None:
    # As seen on vLLM: each client's mean TPOT equals the server's for its run; only the medians moved apart.
    ours = {**_client(427.9, 23.15, server_ttft=355.1, server_tpot=24.38), "mean_tpot_ms": 24.38}
    peer = {**_client(436.9, 24.48, server_ttft=363.6, server_tpot=25.08), "mean_tpot_ms": 25.09}
    notes = evidence.who_is_wrong("vllm", ours, peer, _rows(ours, peer), input_tokens=128, concurrency=4, pinned=True)
    tpot = [n for n in notes if "TPOT" in n]
    assert len(tpot) == 1 and tpot[0].startswith("no client is wrong on TPOT") and "the medians (ratio 1.057)" in tpot[0]


def test_a_slower_server_during_the_peers_run_blames_no_clock_and_shows_the_client_cpu() -> None:
    ours = _client(209.3, 18.6, server_ttft=203.0, server_tpot=18.4, cores=0.12)
    peer = _client(238.7, 20.6, server_ttft=232.0, server_tpot=20.4, cores=0.55, rps=2.53)
    notes = evidence.who_is_wrong("guidellm", ours, peer, _rows(ours, peer), input_tokens=128, concurrency=4, pinned=False)
    assert any(n.startswith("no client is wrong on TTFT") and "232.0" in n for n in notes)
    assert any(n.startswith("no client is wrong on TPOT") for n in notes)
    assert any("ours used 0.12 cores and guidellm 0.55 cores" in n and "the less the server gets" in n for n in notes)
    assert any(n.startswith("throughput: ") and "guidellm reported 2.530 req/s" in n for n in notes)
    # The server slower by 10% while the clients read 40% apart: part system, the rest the straying client's clock.
    far = _client(300.0, 18.7, server_ttft=223.0, server_tpot=18.5)
    mixed = evidence.who_is_wrong("guidellm", ours, far, _rows(ours, far), input_tokens=128, concurrency=4, pinned=True)
    assert any(n.startswith("TTFT: the server itself took 1.099") and "guidellm's reading strays further" in n for n in mixed)


def test_unequal_workloads_are_reported_by_the_servers_counts_even_when_the_numbers_agree() -> None:
    ours = _client(209.3, 18.6, server_ttft=203.0, server_tpot=18.4, sent=139.0)
    peer = _client(212.0, 18.7, server_ttft=205.0, server_tpot=18.5, sent=158.0)
    notes = evidence.who_is_wrong("vllm", ours, peer, _rows(ours, peer), input_tokens=128, concurrency=4, pinned=True)
    assert len(notes) == 1 and notes[0].startswith("unequal workloads") and "139.0" in notes[0] and "158.0" in notes[0]
    cached = {**peer, "mean_input_tokens": 139.0, "server": {**peer["server"], "prefilled_share": 0.82}}
    assert evidence.who_is_wrong("vllm", ours, cached, _rows(ours, cached), input_tokens=128, concurrency=4, pinned=True) == [
        "unequal prefill: the server prefilled 97% of the prompt tokens it took in during ours and 82% during vllm (its prefix "
        "cache served the rest)"]
    same = _client(212.0, 18.7, server_ttft=205.0, server_tpot=18.5)
    assert evidence.who_is_wrong("vllm", _client(209.3, 18.6, server_ttft=203.0, server_tpot=18.4), same,
                                 _rows(ours, same), input_tokens=128, concurrency=4, pinned=True) == []


def test_a_short_answer_and_failures_are_evidence_too() -> None:
    ours = _client(209.3, 18.6, server_ttft=203.0, server_tpot=18.4)
    peer = {**_client(209.0, 18.6, server_ttft=203.0, server_tpot=18.4), "mean_output_tokens": 41.5, "failed": 2}
    notes = evidence.who_is_wrong("guidellm", ours, peer, _rows(ours, peer), input_tokens=128, concurrency=4, pinned=True)
    assert any("guidellm counted 41.50 output tokens per request where 64 were asked" in n for n in notes)
    assert "failed requests: ours 0, guidellm 2" in notes


def test_on_llama_server_the_prefill_speed_referees_ttft_and_the_role_chunk_needs_an_equal_server() -> None:
    ours = {**_client(1030.3, 16.9, server_ttft=0, server_tpot=16.5), "role_chunk_first": True}
    peer = _client(900.0, 17.1, server_ttft=0, server_tpot=16.6)
    for c, per_token in ((ours, 6.10), (peer, 6.15)):
        c["server"] = {**c["server"], "mean_ttft_ms": None, "prefill_ms_per_token": per_token}
    notes = evidence.who_is_wrong("vllm", ours, peer, _rows(ours, peer), input_tokens=128, concurrency=4, pinned=True)
    assert any(n.startswith("TTFT: the server prefilled at 6.10 ms per prompt token") and "did not differ" in n for n in notes)
    assert any(n.startswith("vllm's TTFT median 900.0 ms is 130.3 ms under ours") and "16.5 and 16.6" in n for n in notes)
    slower = {**peer, "server": {**peer["server"], "mean_tpot_ms": 25.0}}
    notes = evidence.who_is_wrong("vllm", ours, slower, _rows(ours, slower), input_tokens=128, concurrency=4, pinned=True)
    assert not any("role" in n for n in notes)
