"""The evidence behind benchmarks/peer_agreement.py's verdicts: the server's own counters around each client's run, and
who is wrong where the clients disagree, each sentence built from numbers in the result (pure functions, tested on
recorded outputs in tests/bench/test_peer_evidence.py).

The server is the referee. Around every client run its /metrics is read twice: the prompt tokens it was sent and how
many it prefilled (so equal workloads are shown, not assumed), and its own time per request: vLLM's
`vllm:time_to_first_token_seconds` and `vllm:inter_token_latency_seconds` histograms; llama-server's prompt and
generation seconds (its time spent prefilling per request, and per generated token). Where two clients disagree and the
server's own times for their runs do not, the client whose reading strays further from the server's is wrong. Where the
server's times moved with the clients', the system itself served them differently (a longer prompt, a client taking CPU
from the server), and the sentence says which by the recorded numbers.
"""

from __future__ import annotations

import statistics
from typing import Any

TOLERANCE = 0.05
METRICS = ("request_throughput", "median_ttft_ms", "median_tpot_ms")
# What each engine's /metrics counts; llama.cpp counts cached prompt tokens apart from the ones it prefilled.
COUNTERS = {
    "embedded": {"prefilled": "llamacpp:prompt_tokens_total", "cached": "llamacpp:prompt_tokens_cached_total",
                 "prefill_s": "llamacpp:prompt_seconds_total", "decode_s": "llamacpp:tokens_predicted_seconds_total",
                 "generated": "llamacpp:tokens_predicted_total"},
    "vllm": {"sent": "vllm:prompt_tokens_total", "cached": "vllm:prompt_tokens_cached_total", "requests": "vllm:request_success_total",
             "generated": "vllm:generation_tokens_total"},
}
HISTOGRAMS = {"vllm": {"ttft": "vllm:time_to_first_token_seconds", "tpot": "vllm:inter_token_latency_seconds"}}


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    return after[name] - before.get(name, 0.0) if name in after else None


def server_counters(engine: str, before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, Any]:
    """From two reads of /metrics (summed sample values): the prompt tokens the server took in and the share it prefilled
    (the rest its prefix cache served), and its own time: vLLM's mean TTFT and inter-token latency; llama-server's prefill
    time per prompt token and time per generated token. llama-server counts no requests: `requests` (what the client sent)
    weighs its rounds only, and no figure of it is divided by that count."""
    names, d = COUNTERS.get(engine, {}), {k: _delta(before, after, v) for k, v in COUNTERS.get(engine, {}).items()}
    if not names or all(v is None for v in d.values()):
        return {"available": False}
    n = d.get("requests") or requests
    if engine == "vllm":
        sent, prefilled = d["sent"], (d["sent"] or 0) - (d["cached"] or 0) if d["sent"] is not None else None
    else:
        sent, prefilled = (d["prefilled"] or 0) + (d["cached"] or 0), d["prefilled"]
    out: dict[str, Any] = {"available": True, "requests": n, "prompt_tokens_total": sent, "prefilled_tokens_total": prefilled,
                           "prefilled_share": _per(prefilled, sent)}
    for key, name in HISTOGRAMS.get(engine, {}).items():
        total, count = _delta(before, after, f"{name}_sum"), _delta(before, after, f"{name}_count")
        out[f"mean_{key}_ms"] = round(total * 1e3 / count, 3) if total is not None and count else None
    if engine == "embedded":
        out["prefill_ms_per_token"] = _per(d["prefill_s"] * 1e3 if d["prefill_s"] is not None else None, prefilled)
        out["mean_tpot_ms"] = round(d["decode_s"] * 1e3 / d["generated"], 3) if d["decode_s"] is not None and d["generated"] else None
    return out


def _per(value: float | None, n: int | float | None) -> float | None:
    return round(value / n, 3) if value is not None and n else None


def _mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def pooled_server(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A client's server-side view over its rounds: each per-request figure weighted by the round's requests."""
    seen = [r["server"] for r in runs if r.get("server", {}).get("available")]
    if not seen:
        return {"available": False}
    totals = ("requests", "prompt_tokens_total", "prefilled_tokens_total")
    out: dict[str, Any] = {"available": True, **{k: sum(s.get(k) or 0 for s in seen) for k in totals}}
    out["prefilled_share"] = _per(out["prefilled_tokens_total"], out["prompt_tokens_total"])
    for key in sorted({k for s in seen for k in s} - {"available", "prefilled_share", *totals}):
        pairs = [(s[key], s["requests"]) for s in seen if s.get(key) is not None]
        out[key] = round(sum(v * n for v, n in pairs) / sum(n for _, n in pairs), 3) if pairs else None
    return out


def client_cores(runs: list[dict[str, Any]]) -> float | None:
    """The client's mean cores over its runs: CPU seconds of its process tree over wall seconds."""
    cpu, wall = sum(r.get("client_cpu_s") or 0.0 for r in runs), sum(r.get("wall_s") or 0.0 for r in runs)
    return round(cpu / wall, 3) if wall else None


# ---------------------------------------------------------------- who is wrong


def _r(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def workload_notes(name: str, ours: dict[str, Any], peer: dict[str, Any], input_tokens: int) -> list[str]:
    """Equal workloads, by the server's counts; a difference is evidence of its own, said with both counts."""
    notes = []
    x, y = ours.get("mean_input_tokens"), peer.get("mean_input_tokens")  # the server's usage count of each request's prompt
    if x and y and abs(y / x - 1) > 0.02:
        notes.append(f"unequal workloads: the server counted {_r(x)} prompt tokens per request for ours and {_r(y)} for {name} "
                     f"({input_tokens} of text asked of each; the rest is the chat template); the TTFTs time different prefills")
    x, y = ours.get("server", {}).get("prefilled_share"), peer.get("server", {}).get("prefilled_share")
    if x and y and abs(y - x) > 0.05:
        notes.append(f"unequal prefill: the server prefilled {x:.0%} of the prompt tokens it took in during ours and {y:.0%} during "
                     f"{name} (its prefix cache served the rest)")
    for who, stats in (("ours", ours), (name, peer)):
        counted = stats.get("mean_output_tokens")
        if counted is not None and stats.get("output_tokens_asked") and abs(counted - stats["output_tokens_asked"]) > 0.5:
            notes.append(f"{who} counted {_r(counted, 2)} output tokens per request where {stats['output_tokens_asked']} were asked "
                         "with ignore_eos: its TPOT and throughput are over a different answer length")
    if ours.get("failed") or peer.get("failed"):
        notes.append(f"failed requests: ours {ours.get('failed')}, {name} {peer.get('failed')}")
    return notes


AGREE = 0.01  # a client whose mean is within 1% of the server's own reads the server's clock


def _clock_note(name: str, metric: str, ours: dict[str, Any], peer: dict[str, Any], ratio: float) -> str | None:
    """Who is wrong on a latency where the server's own time says how long the requests took."""
    key = {"median_ttft_ms": ("mean_ttft_ms", "mean_ttft_ms"), "median_tpot_ms": ("mean_tpot_ms", "mean_tpot_ms")}[metric]
    server_key, client_key = key
    s_ours, s_peer = ours.get("server", {}).get(server_key), peer.get("server", {}).get(server_key)
    c_ours, c_peer = ours.get(client_key), peer.get(client_key)
    label = "TTFT" if "ttft" in metric else "TPOT"
    if None in (s_ours, s_peer, c_ours, c_peer) or not s_ours:
        return _prefill_note(name, ours, peer, ratio) if label == "TTFT" else None
    server_ratio = s_peer / s_ours
    gap_ours, gap_peer = c_ours - s_ours, c_peer - s_peer
    if abs(gap_ours) <= AGREE * s_ours and abs(gap_peer) <= AGREE * s_peer:
        return (f"no client is wrong on {label}: each client's mean {label} is the server's own for its run ({_r(c_ours)} against "
                f"{_r(s_ours)} ms for ours, {_r(c_peer)} against {_r(s_peer)} ms for {name}); the medians (ratio {ratio:.3f}) moved "
                f"more than the means (server ratio {server_ratio:.3f}): the runs' latency distributions differed, not the clocks")
    if abs(server_ratio - 1) <= TOLERANCE:
        wrong = name if abs(gap_peer) > abs(gap_ours) else "ours"
        return (f"{_who(wrong)} is wrong on {label}: the server's own mean {label} was {_r(s_ours)} ms during ours and {_r(s_peer)} ms during "
                f"{name} (ratio {server_ratio:.3f}), yet the clients read {_r(c_ours)} and {_r(c_peer)} ms (median ratio {ratio:.3f}); "
                f"{_who(wrong)}'s reading strays {_r(abs(gap_peer if wrong == name else gap_ours))} ms from the server's, the other's "
                f"{_r(abs(gap_ours if wrong == name else gap_peer))} ms")
    served = (f"the server itself took {server_ratio:.3f} times as long during {name}'s run ({_r(s_peer)} against {_r(s_ours)} ms "
              f"by its own clock) and the clients' median ratio is {ratio:.3f}")
    if abs(ratio / server_ratio - 1) <= TOLERANCE:
        return (f"no client is wrong on {label}: {served}: the system served the two runs differently (see the prompt tokens "
                "and client CPU recorded beside it)")
    gap_ours, gap_peer = c_ours - s_ours, c_peer - s_peer
    wrong = name if abs(gap_peer) > abs(gap_ours) else "ours"
    return (f"{label}: {served}; the server's own time explains part of it, and {_who(wrong)}'s reading strays further from the "
            f"server's ({_r(abs(gap_peer if wrong == name else gap_ours))} against {_r(abs(gap_ours if wrong == name else gap_peer))} ms)")


def _who(name: str) -> str:
    return "our bench" if name == "ours" else name


def _prefill_note(name: str, ours: dict[str, Any], peer: dict[str, Any], ratio: float) -> str | None:
    """llama-server has no TTFT of its own; its prefill time per prompt token says whether the prefill itself differed."""
    a, b = ours.get("server", {}).get("prefill_ms_per_token"), peer.get("server", {}).get("prefill_ms_per_token")
    if not (a and b):
        return None
    same = abs(b / a - 1) <= TOLERANCE
    return (f"TTFT: the server prefilled at {a:.2f} ms per prompt token during ours and {b:.2f} during {name} (ratio {b / a:.3f}) "
            f"while the clients' median TTFT ratio is {ratio:.3f}: "
            + ("the prefill did not differ, so the gap is in the clients' clocks or in queueing behind other requests"
               if same else "the server's prefill itself ran at a different speed during the two runs"))


def _cpu_note(name: str, ours: dict[str, Any], peer: dict[str, Any], pinned: bool) -> str | None:
    a, b = ours.get("client_cores"), peer.get("client_cores")
    if a is None or b is None or abs(b - a) < 0.05:
        return None
    where = ("on its own core (the server pinned to the other), so it took nothing from the server" if pinned
             else "on the cores the server uses, so the more a client uses the less the server gets")
    return f"client CPU: ours used {a:.2f} cores and {name} {b:.2f} cores while measuring, {where}"


def _throughput_note(name: str, ours: dict[str, Any], peer: dict[str, Any], concurrency: int) -> str | None:
    """Closed loop: requests/s should equal concurrency / mean latency; a client whose quotient strays divides by another duration."""
    notes = []
    for who, stats in (("ours", ours), (name, peer)):
        e2el, reported = stats.get("mean_e2el_ms"), stats.get("request_throughput")
        if e2el and reported:
            implied = concurrency * 1e3 / e2el
            notes.append(f"{who} reported {reported:.3f} req/s where {concurrency} streams at its own mean latency {e2el:.0f} ms "
                         f"give {implied:.3f} ({reported / implied:.3f} of it)")
    over = peer.get("completed_over_duration")
    if over:
        notes.append(f"{name}'s completed requests over its run's duration give {over:.3f} req/s")
    return "throughput: " + "; ".join(notes) if notes else None


def _role_chunk_note(name: str, ours: dict[str, Any], peer: dict[str, Any], rows: dict[str, Any]) -> str | None:
    if name != "vllm" or not ours.get("role_chunk_first"):
        return None
    s_ours, s_peer = ours.get("server", {}).get("mean_tpot_ms"), peer.get("server", {}).get("mean_tpot_ms")
    if not (s_ours and s_peer) or abs(s_peer / s_ours - 1) > TOLERANCE:
        return None  # the server itself ran at another speed: no clock difference can be read from the medians
    t_ours, t_peer = rows["median_ttft_ms"]["ours"], rows["median_ttft_ms"]["theirs"]
    if not (t_ours and t_peer) or t_peer >= t_ours * (1 - TOLERANCE):
        return None
    return (f"vllm's TTFT median {t_peer:.1f} ms is {t_ours - t_peer:.1f} ms under ours while the server generated at the same "
            f"speed for both ({s_ours:.1f} and {s_peer:.1f} ms per token by its own clock), on a server whose first chunk carries "
            "only the role (recorded: role_chunk_first): vllm bench serve stops its clock at the first chunk with choices, ours "
            "at the first content")


def who_is_wrong(name: str, ours: dict[str, Any], peer: dict[str, Any], rows: dict[str, Any], *, input_tokens: int,
                 concurrency: int, pinned: bool) -> list[str]:
    """Evidence for each disagreement, every sentence from recorded numbers; the workload check is said even when they agree."""
    notes = workload_notes(name, ours, peer, input_tokens)
    disagree = [m for m in METRICS if not rows[m]["within_5_percent"]]
    if not disagree:
        return notes
    for metric in ("median_ttft_ms", "median_tpot_ms"):
        if metric in disagree and rows[metric]["ratio"] is not None:
            note = _clock_note(name, metric, ours, peer, rows[metric]["ratio"])
            notes.append(note or f"{metric} disagrees (ratio {rows[metric]['ratio']:.3f}) and the server exports no time of its "
                                 "own to referee it")
    extra = [_cpu_note(name, ours, peer, pinned), _role_chunk_note(name, ours, peer, rows)]
    if "request_throughput" in disagree:
        extra.append(_throughput_note(name, ours, peer, concurrency))
    return notes + [n for n in extra if n]
