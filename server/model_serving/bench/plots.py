"""PNG plots: latency distributions with the targets drawn in, and throughput / p95 latency against concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_serving.bench.schema import BenchResult, RequestRecord
from model_serving.util.paths import atomic_output

# Imported inside functions: matplotlib, optional, and about a second to import (preload() starts it early).


# matplotlib ships no type information: its pyplot module, figures and axes are typed Any here.
def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def preload() -> None:
    """Import the plotting library now (about a second), e.g. while an engine starts, rather than after a benchmark."""
    _pyplot()


def _save(plt: Any, fig: Any, path: Path) -> str:
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return str(path)


def write_plots(result: BenchResult, output_dir: Path, stem: str) -> dict[str, str]:
    plt = _pyplot()
    if plt is None:
        return {}
    files: dict[str, str] = {}
    ok = [r for r in result.records if r.status == "ok"]
    if ok:
        files["latency_png"] = _save(plt, _latency_figure(plt, result, ok), output_dir / f"{stem}.latency.png")
    if len(result.sweep) >= 2:
        files["sweep_png"] = _save(plt, _sweep_figure(plt, result), output_dir / f"{stem}.sweep.png")
    return files


def _latency_figure(plt: Any, result: BenchResult, ok: list[RequestRecord]) -> Any:
    panels = [
        ("Time to first token", [r.ttft_ms for r in ok if r.ttft_ms is not None], result.config.targets.ttft_ms),
        ("Time per output token (excl. first)", [r.tpot_ms for r in ok if r.tpot_ms is not None], None),
        ("End-to-end latency", [r.e2el_ms for r in ok if r.e2el_ms is not None], result.config.targets.e2e_ms),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for ax, (title, values, target) in zip(axes, panels, strict=True):
        if values:
            _histogram(ax, values, target)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ms")
        ax.set_ylabel("requests")
    fig.suptitle(f"{result.config.model}: {result.summary.completed} requests, concurrency {result.config.concurrency}", fontsize=11)
    return fig


def _histogram(ax: Any, values: list[float], target: float | None) -> None:
    ordered = sorted(values)
    lo, hi = ordered[0], ordered[-1]
    pad = max((hi - lo) * 0.15, abs(hi) * 0.02, 0.05)
    # The target is drawn only when it falls near the data; otherwise it would squash the bars to a sliver.
    near = target is not None and lo - 3 * pad <= target <= hi + (hi - lo + pad) * 1.5
    left, right = lo - pad, hi + pad
    if near and target is not None:
        left, right = min(left, target - pad), max(right, target + pad)
    ax.hist(values, bins=min(30, max(5, len(values) // 2)), range=(lo - pad / 2, hi + pad / 2), color="#4C72B0", edgecolor="white")
    median, p95 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    ax.axvline(median, color="#222222", linestyle="--", linewidth=1, label=f"median {median:.1f} ms")
    ax.axvline(p95, color="#DD8452", linestyle=":", linewidth=1.5, label=f"p95 {p95:.1f} ms")
    if target is not None:
        if near:
            ax.axvline(target, color="#C44E52", linewidth=2, label=f"target {target:g} ms")
        else:
            side = "beyond the right edge" if target > hi else "below the left edge"
            ax.plot([], [], color="#C44E52", linewidth=2, label=f"target {target:g} ms ({side})")
    ax.set_xlim(left, right)
    ax.legend(fontsize=8)


def _sweep_figure(plt: Any, result: BenchResult) -> Any:
    """Requests/s (left) and p95 TTFT and end-to-end latency (right) against concurrency, with the targets as dotted lines."""
    points = sorted(result.sweep, key=lambda p: p.concurrency)
    xs = [p.concurrency for p in points]
    targets = result.config.targets
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    ax.plot(xs, [p.request_throughput for p in points], "o-", color="#4C72B0", label="requests/s")
    if targets.request_throughput:
        ax.axhline(targets.request_throughput, color="#4C72B0", linestyle=":", linewidth=1, label=f"target {targets.request_throughput:g} req/s")
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("completed requests/s", color="#4C72B0")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(bottom=0, top=max([p.request_throughput for p in points] + [targets.request_throughput or 0]) * 1.15 or 1)
    right = ax.twinx()
    right.plot(xs, [p.p95_ttft_ms or 0 for p in points], "^--", color="#DD8452", label="p95 TTFT ms")
    right.plot(xs, [p.p95_e2el_ms or 0 for p in points], "s--", color="#C44E52", label="p95 end-to-end ms")
    for target, color in ((targets.ttft_ms, "#DD8452"), (targets.e2e_ms, "#C44E52")):
        if target:
            right.axhline(target, color=color, linestyle=":", linewidth=1)
    right.set_ylabel("p95 latency (ms); dotted: targets", color="#C44E52")
    right.set_ylim(bottom=0, top=max([p.p95_e2el_ms or 0 for p in points] + [targets.e2e_ms or 0]) * 1.15 or 1)
    if result.knee and result.knee.concurrency:
        ax.axvline(result.knee.concurrency, color="#555555", linestyle=":", label=f"knee at {result.knee.concurrency} ({result.knee.cause.replace('_', ' ')})")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    # Below the axes: inside, it would cover a data point whichever corner it took.
    ax.legend(handles, [h.get_label() for h in handles], loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8, frameon=False)
    ax.set_title(f"{result.config.model}: throughput and p95 latency against concurrency", fontsize=10)
    return fig
