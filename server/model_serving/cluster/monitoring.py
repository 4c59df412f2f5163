"""Scaling and watching: the KEDA ScaledObject, the PodMonitor, the PrometheusRule and a Grafana dashboard.

All of them read the engine's own metric names (serve/metrics.py ENGINES), so a bundle for
llama.cpp watches `llamacpp:*` and one for vLLM `vllm:*`.
"""

from __future__ import annotations

from typing import Any

from model_serving.cluster.spec import PROMETHEUS_ADDRESS, QUEUE_PER_REPLICA, TTFT_P95_ALERT_S, BundleSpec


def _meta(s: BundleSpec) -> dict[str, Any]:
    return {"name": s.name, "labels": dict(s.labels)}


def waiting_query(s: BundleSpec) -> str:
    return f"sum({s.metrics.waiting}{{{s.selector}}})"


def ttft_p95_query(s: BundleSpec) -> str | None:
    if not s.metrics.ttft:
        return None
    return f"histogram_quantile(0.95, sum by (le) (rate({s.metrics.ttft}_bucket{{{s.selector}}}[5m])))"


def scaled_object(s: BundleSpec) -> dict[str, Any]:
    # minReplicaCount 1: scale-to-zero would make the first request after a quiet spell wait out a whole
    # cold start (the start-up budget: minutes), so it stays off unless the user lowers it knowingly.
    trigger = {"type": "prometheus", "metadata": {"serverAddress": PROMETHEUS_ADDRESS, "query": waiting_query(s),
                                                  "threshold": str(QUEUE_PER_REPLICA)}}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": _meta(s),
            "spec": {"scaleTargetRef": {"name": s.name}, "minReplicaCount": 1, "maxReplicaCount": s.max_replicas,
                     # a replica takes the start-up budget to come up: do not give it back sooner than that
                     "pollingInterval": 15, "cooldownPeriod": max(300, s.startup_budget_s), "triggers": [trigger]}}


def pod_monitor(s: BundleSpec) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": _meta(s),
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": s.name}},
                     "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]}}


def _alert(name: str, expr: str, summary: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": "10m", "labels": {"severity": "warning"}, "annotations": {"summary": summary}}


def prometheus_rule(s: BundleSpec) -> dict[str, Any]:
    title = "".join(p.capitalize() for p in s.name.replace(".", "-").replace("_", "-").split("-"))
    rules = [_alert(f"{title}QueueDeep", f"{waiting_query(s)} > {QUEUE_PER_REPLICA * s.max_replicas}",
                    f"{s.name}: more than {QUEUE_PER_REPLICA} requests waiting per replica at {s.max_replicas} replicas (the autoscaler's ceiling)")]
    ttft = ttft_p95_query(s)
    if ttft:
        rules.insert(0, _alert(f"{title}TTFTHigh", f"{ttft} > {TTFT_P95_ALERT_S:g}",
                               f"{s.name}: time to first token p95 above {TTFT_P95_ALERT_S:g} s for 10 minutes"))
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": _meta(s),
            "spec": {"groups": [{"name": f"{s.name}.serving", "rules": rules}]}}


def _panel(pid: int, title: str, unit: str, exprs: dict[str, str]) -> dict[str, Any]:
    targets = [{"refId": chr(65 + i), "expr": e, "legendFormat": legend, "datasource": {"type": "prometheus", "uid": "${datasource}"}}
               for i, (legend, e) in enumerate(exprs.items())]
    return {"id": pid, "type": "timeseries", "title": title, "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * ((pid - 1) % 2), "y": 8 * ((pid - 1) // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "targets": targets}


def _latency(s: BundleSpec, metric: str | None) -> dict[str, str]:
    if not metric:
        return {}
    q = lambda p: f"histogram_quantile({p}, sum by (le) (rate({metric}_bucket{{{s.selector}}}[5m])))"  # noqa: E731
    return {"p50": q(0.5), "p95": q(0.95)}


def dashboard(s: BundleSpec) -> dict[str, Any]:
    m, sel = s.metrics, s.selector
    panels = [("Requests", "short", {"running": f"sum({m.running}{{{sel}}})", "waiting": f"sum({m.waiting}{{{sel}}})"}),
              ("Tokens/s", "short", {"generated": f"sum(rate({m.generation_tokens}{{{sel}}}[1m]))",
                                     "prompt": " + ".join(f"sum(rate({p}{{{sel}}}[1m]))" for p in m.prompt_tokens)}),
              ("Time to first token", "s", _latency(s, m.ttft)), ("End-to-end latency", "s", _latency(s, m.e2e)),
              ("KV cache use", "percentunit", {"kv": f"max({m.kv_usage[0]}{{{sel}}})"} if m.kv_usage else {})]
    shown = [(t, u, e) for t, u, e in panels if e]
    return {"title": f"{s.name} ({s.engine})", "uid": s.name[:40], "schemaVersion": 39, "version": 1, "editable": True,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "tags": ["model-serving", s.engine],
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]},
            "panels": [_panel(i + 1, t, u, e) for i, (t, u, e) in enumerate(shown)]}
