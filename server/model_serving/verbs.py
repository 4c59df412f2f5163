"""The verbs both faces run: one function per verb, taking the settings and the verb's validated input model.

`model-serving <verb>` and the MCP tool of the same verb call the same function here, so their
results are the same model. Imports are lazy: a CLI run loads only what its verb needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_serving.errors import InputError
from model_serving.requests import (
    BenchCompareRequest,
    BenchRequest,
    CheckModelfileRequest,
    CleanRequest,
    CostRequest,
    DeployRequest,
    EngineInstallRequest,
    EvalRequest,
    ExportRequest,
    GatewayRequest,
    InspectRequest,
    Listing,
    MergeRequest,
    ModelfileRequest,
    NameRequest,
    NoInput,
    OllamaCopyRequest,
    OllamaManageRequest,
    OllamaNameRequest,
    OllamaProbeRequest,
    PlanProductionRequest,
    PublishRequest,
    QuantABRequest,
    QuantizeRequest,
    RegisterRequest,
    RooflineRequest,
    ServeStartRequest,
    VersionsRequest,
)
from model_serving.settings import Settings
from model_serving.util.paths import clean, confine

if TYPE_CHECKING:
    from model_serving.bench.compare import CompareResult
    from model_serving.bench.quant_ab import QuantABResult
    from model_serving.bench.schema import BenchResult, Roofline
    from model_serving.checkpoint.export import ExportResult
    from model_serving.checkpoint.inspect import CheckpointInfo, GGUFInfo
    from model_serving.checkpoint.lora import MergeResult
    from model_serving.checkpoint.mergekit_env import MergekitEnvironment
    from model_serving.checkpoint.mergekit_merge import MergekitResult
    from model_serving.cluster.bundle import Bundle
    from model_serving.cluster.cost import CostEstimate
    from model_serving.deploy.context import DeployResult
    from model_serving.jobs import Progress
    from model_serving.lifecycle.eval_report import EvalReport
    from model_serving.lifecycle.history import PruneResult, VersionHistory
    from model_serving.lifecycle.switch import SwitchResult
    from model_serving.publish.outcome import PublishResult
    from model_serving.quantize.compress import CompressResult
    from model_serving.quantize.compressor_env import CompressorEnvironment
    from model_serving.quantize.quantizer import QuantizeResult
    from model_serving.serve.gateway.llama_router import Gateway
    from model_serving.serve.metrics import MetricsView
    from model_serving.serve.ollama import manage
    from model_serving.serve.ollama.client import ModelEntry, ShowInfo
    from model_serving.serve.probe_checks import ProbeResult
    from model_serving.serve.register import RegisterResult
    from model_serving.serve.registry import ServedModel
    from model_serving.serve.status import ServingStatus
    from model_serving.serve.vllm.env import VllmEnvironment
    from model_serving.util.paths import CleanResult


def inspect_model(settings: Settings, req: InspectRequest) -> CheckpointInfo | GGUFInfo:
    """Describe a checkpoint or .gguf: architecture, template, stops, memory estimate."""
    from model_serving.checkpoint.inspect import inspect_path

    return inspect_path(settings, req.path, ctx_size=req.ctx_size, parallel=req.parallel, base=req.base)


def merge_adapter(settings: Settings, req: MergeRequest, progress: Progress) -> MergeResult | MergekitResult:
    """Merge a LoRA into its base (peft), or fine-tunes with mergekit; slerp's t is weight."""
    if req.method != "lora":
        return _merge_models(settings, req, progress)
    from model_serving.checkpoint.lora import merge_adapter as run

    assert req.adapter is not None  # the request puts the one adapter there
    return run(settings, req.adapter, req.base, req.output, dtype=req.dtype, overwrite=req.replace, progress=progress)


def _merge_models(settings: Settings, req: MergeRequest, progress: Progress) -> MergekitResult:
    """mergekit's merge, then (unless verify is off) the merge against each input on the built-in quality set, and on
    the user's eval set when one is given (read first: a bad line is refused before the merge)."""
    from model_serving.checkpoint.mergekit_merge import merge_models
    from model_serving.lifecycle.evalset import load_eval_set
    from model_serving.util.paths import confine

    cases = load_eval_set(confine(req.eval_set, settings.roots, what="eval set")) if req.eval_set else None
    t = req.weight[0] if req.method == "slerp" and req.weight is not None and len(req.weight) == 1 else None
    measured = req.verify or cases is not None
    done = merge_models(settings, list(req.models or []), req.base, req.output, method=req.method, t=t,
                        weight=None if t is not None else req.weight, density=req.density, dtype=req.dtype, overwrite=req.replace, progress=progress.span(0.0, 0.6 if measured else 1.0))
    if not measured:
        progress.complete(f"merged into {done.output_path}")
        return done
    done = _measure_merge(settings, done, req, cases, progress.span(0.6, 1.0))
    progress.complete(f"merged into {done.output_path}" + (f"; measured against {len(done.inputs)} inputs" if done.quality_error is None else ""))
    return done


def _measure_merge(settings: Settings, done: MergekitResult, req: MergeRequest, cases: list[Any] | None, progress: Progress) -> MergekitResult:
    """Both measurements over one export of each checkpoint; when they cannot run the merge stands and the result says why."""
    from pathlib import Path

    from model_serving.checkpoint.merge_quality import compare_with_inputs, exported
    from model_serving.errors import ServingError
    from model_serving.lifecycle.merge_evals import against_inputs

    inputs = [Path(i.path) for i in done.inputs]
    update: dict[str, Any] = {"eval_set": req.eval_set}
    try:
        with exported(settings, Path(done.output_path), inputs, progress.span(0.0, 0.3)) as (merged_gguf, ggufs):
            pairs = list(zip(inputs, ggufs, strict=True))
            if req.verify:
                update["quality"] = compare_with_inputs(settings, merged_gguf, pairs, progress.span(0.3, 0.6 if cases else 1.0))
            if cases:
                update["evals"] = [e.model_dump(mode="json") for e in against_inputs(settings, merged_gguf, pairs, cases, progress.span(0.6, 1.0))]
    except ServingError as exc:
        update["quality_error"] = f"{exc.cause} {exc.next_step}"
    return done.model_copy(update=update)


def export_gguf(settings: Settings, req: ExportRequest, progress: Progress) -> ExportResult:
    """Checkpoint to GGUF (llama.cpp's converter); vocab, template, EOS verified."""
    from model_serving.checkpoint.export import export_gguf as run

    if req.as_lora_gguf:
        from model_serving.checkpoint.lora_gguf import export_lora_gguf

        return export_lora_gguf(settings, req.source, req.base, req.output, outtype=req.outtype, overwrite=req.replace, progress=progress)
    return run(settings, req.source, req.output, outtype=req.outtype, overwrite=req.replace, progress=progress)


def quantize_gguf(settings: Settings, req: QuantizeRequest, progress: Progress) -> QuantizeResult | CompressResult:
    """Quantize a GGUF, or a checkpoint to a vLLM format; with verify, a quality verdict."""
    from model_serving.quantize.quantizer import quantize_gguf as run
    from model_serving.toolchain import tool

    if req.format is not None:
        from model_serving.serve.vllm.compress_gate import compress_and_gate

        return compress_and_gate(settings, req.input_path, req.output, req.format, calibration=req.calibration, overwrite=req.replace,
                                 verify=req.verify, progress=progress)
    assert req.qtype is not None  # the request holds one of the two
    return run(settings, Path(req.input_path), Path(req.output) if req.output else None, req.qtype,
               allow_requantize=req.allow_requantize, overwrite=req.replace, verify=req.verify,
               quantizer=tool(settings, "llama-quantize"), imatrix_tool=tool(settings, "llama-imatrix"), calibration=req.calibration, progress=progress)


def serve_start(settings: Settings, req: ServeStartRequest) -> ServedModel:
    """Serve a GGUF on llama.cpp or, with engine vllm, an HF checkpoint on vLLM."""
    from model_serving.serve.engine_protocol import StartOptions
    from model_serving.serve.engines import start

    return start(settings, StartOptions(source=Path(req.gguf_path), name=req.name, ctx_size=req.ctx_size, parallel=req.parallel,
                                        threads=req.threads, port=req.port, replace=req.replace, lora=list(req.lora or []),
                                        replicas=req.replicas, policy=req.policy, engine=req.engine,
                                        chat_template=Path(req.chat_template) if req.chat_template else None, completions=req.completions))


def serve_stop(settings: Settings, req: NameRequest) -> ServedModel:
    """Stop a served model, whichever engine serves it."""
    from model_serving.serve.engines import stop
    from model_serving.serve.gateway.llama_router import ensure_gateway

    model = stop(settings, req.name)
    ensure_gateway(settings)  # the gateway is resized as on a start: the models-max count follows the largest model left
    return model


def serve_gateway(settings: Settings, req: GatewayRequest) -> Gateway:
    """One base URL for all models, by name"""
    from model_serving.serve.gateway import llama_router as router

    if req.action == "start":
        return router.start_gateway(settings, port=req.port, keep_alive_s=req.keep_alive, memory_budget_gb=req.memory_budget_gb)
    if req.port is not None or req.keep_alive is not None or req.memory_budget_gb is not None:
        raise InputError(f"port, keep_alive and memory_budget_gb only apply to starting the gateway, not to {req.action}.",
                         "Leave them out, or use action start (it restarts a running gateway with them).")
    return router.stop_gateway(settings) if req.action == "stop" else router.gateway_status(settings)


def serve_list(settings: Settings, req: NoInput) -> Listing[ServedModel]:
    """Models the embedded engine serves."""
    from model_serving.serve.registry import ServedModel, list_models

    return Listing[ServedModel].of(list_models(settings))


def register_model(settings: Settings, req: RegisterRequest, progress: Progress) -> RegisterResult:
    """Serve a GGUF (embedded or Ollama) and prove a chat answers and stops."""
    from model_serving.serve.register import register

    return register(settings, req.gguf_path, req.name, target=req.target, source_dir=req.source_dir, ctx_size=req.ctx_size,
                    parallel=req.parallel, replace=req.replace, quantize=req.quantize, system=req.system, template=req.template,
                    adapter=req.adapter, chat_template=req.chat_template, progress=progress)


def serving_status(settings: Settings, req: NoInput) -> ServingStatus:
    """What is served: engines (health, slots, memory); Ollama version, models, loaded."""
    from model_serving.serve.status import serving_status as status

    return status(settings)


def deploy_model(settings: Settings, req: DeployRequest, progress: Progress) -> DeployResult:
    """Checkpoint to served, verified, benchmarked model; resumable. Try plan first."""
    from model_serving.deploy.pipeline import deploy

    return deploy(settings, req, progress)


def clean_partials(settings: Settings, req: CleanRequest) -> CleanResult:
    """Remove stale partial files and orphaned sidecars under a folder."""
    return clean(req.directory, settings.roots, plan=req.plan)


def bench(settings: Settings, req: BenchRequest, progress: Progress) -> BenchResult:
    """Benchmark a served model against targets; rate: Poisson arrivals; levels: a sweep."""
    from model_serving.bench.options import config_from_request
    from model_serving.bench.runner import run_benchmark, run_sweep

    config = config_from_request(settings, req)
    return run_sweep(config, req.levels, progress) if req.levels else run_benchmark(config, progress)


def bench_roofline(settings: Settings, req: RooflineRequest) -> Roofline:
    """Decode ceiling of a GGUF from memory bandwidth; a measured tok/s as a share of it."""
    from model_serving.bench.roofline import roofline

    path = confine(req.gguf, settings.roots, what="GGUF path")
    return roofline(Path(path), req.tok_s, req.context, bandwidth_gbs=req.bandwidth_gbs)


def bench_quant_ab(settings: Settings, req: QuantABRequest, progress: Progress) -> QuantABResult:
    """Compare quantizations on speed and quality; names the smallest meeting both."""
    from model_serving.bench.quant_ab import run_quant_ab
    from model_serving.bench.schema import SLO

    targets = SLO(ttft_ms=req.ttft_ms, e2e_ms=req.e2e_ms, request_throughput=None, memory_gb=None)
    if req.adapter is not None:
        return _adapter_ab(settings, req, req.adapter, targets, progress)
    return run_quant_ab(settings, req.ggufs, n_requests=req.n_requests, concurrency=req.concurrency, max_tokens=req.max_tokens,
                        targets=targets, quality_floor=req.quality_floor, max_ppl_ratio=req.max_ppl_ratio, output_dir=req.output,
                        progress=progress)


def _adapter_ab(settings: Settings, req: QuantABRequest, adapter: str, targets: Any, progress: Progress) -> QuantABResult:
    """bench_quant_ab with an adapter: the merged GGUF against the base GGUF serving the adapter."""
    from model_serving.bench.adapter_ab import run_adapter_ab

    if len(req.ggufs) != 2:
        raise InputError(f"With an adapter the A/B takes two GGUFs, the merged one and the base; {len(req.ggufs)} were given.",
                         "Pass MERGED.gguf BASE.gguf --adapter ADAPTER.gguf.")
    return run_adapter_ab(settings, req.ggufs[0], req.ggufs[1], adapter, n_requests=req.n_requests, concurrency=req.concurrency,
                          max_tokens=req.max_tokens, targets=targets, quality_floor=req.quality_floor, output_dir=req.output,
                          progress=progress)


def ollama_version(settings: Settings, req: NoInput) -> manage.ServerStatus:
    """Whether Ollama answers, its version and missing features."""
    from model_serving.serve.ollama import manage

    return manage.server_status(settings)


def ollama_list(settings: Settings, req: NoInput) -> Listing[ModelEntry]:
    """Models on the Ollama server."""
    from model_serving.serve.ollama import manage
    from model_serving.serve.ollama.client import ModelEntry

    return Listing[ModelEntry].of(manage.list_models(settings))


def ollama_show(settings: Settings, req: OllamaNameRequest) -> ShowInfo:
    """What Ollama stored for a model: template, parameters, capabilities."""
    from model_serving.serve.ollama import manage

    return manage.show_model(settings, req.name)


def ollama_ps(settings: Settings, req: NoInput) -> Listing[manage.RunningInfo]:
    """Models loaded in Ollama."""
    from model_serving.serve.ollama import manage

    return Listing[manage.RunningInfo].of(manage.running_models(settings))


def ollama_copy(settings: Settings, req: OllamaCopyRequest) -> manage.ActionResult:
    """Copy (tag) an Ollama model under another name."""
    from model_serving.serve.ollama import manage

    return manage.copy_model(settings, req.source, req.destination, overwrite=req.replace)


def ollama_delete(settings: Settings, req: OllamaNameRequest) -> manage.ActionResult:
    """Delete an Ollama model; cannot be undone."""
    from model_serving.serve.ollama import manage

    return manage.delete_model(settings, req.name)


def ollama_unload(settings: Settings, req: OllamaNameRequest) -> manage.ActionResult:
    """Unload an Ollama model from memory."""
    from model_serving.serve.ollama import manage

    return manage.unload_model(settings, req.name)


def ollama_pull(settings: Settings, req: OllamaNameRequest, progress: Progress) -> manage.ActionResult:
    """Pull a model from Ollama's registry."""
    from model_serving.serve.ollama import manage

    return manage.pull_model(settings, req.name, progress)


def ollama_manage(settings: Settings, req: OllamaManageRequest, progress: Progress) -> manage.ActionResult:
    """Copy (tag), delete (cannot be undone), unload or pull an Ollama model."""
    if req.action == "copy":
        if req.destination is None:
            raise InputError("Copying needs a destination name.", "Give destination, e.g. NAME:v1.")
        return ollama_copy(settings, OllamaCopyRequest(source=req.name, destination=req.destination, replace=req.replace))
    if req.destination is not None or req.replace:
        raise InputError(f"destination and replace belong to copy, not {req.action}.", "Leave them out, or use action copy.")
    named = OllamaNameRequest(name=req.name)
    if req.action == "pull":
        return ollama_pull(settings, named, progress)
    return ollama_delete(settings, named) if req.action == "delete" else ollama_unload(settings, named)


def ollama_probe(settings: Settings, req: OllamaProbeRequest) -> ProbeResult:
    """One chat with an Ollama model: passes when it answers and stops."""
    from model_serving.serve.ollama.ollama_probe import probe_model

    return probe_model(settings, req.name, num_predict=req.num_predict)


def ollama_modelfile(settings: Settings, req: ModelfileRequest) -> manage.ModelfileResult:
    """The Modelfile registration would write for a GGUF."""
    gguf = confine(req.gguf_path, settings.roots, what="GGUF file")
    source = confine(req.source_dir, settings.roots, what="checkpoint folder") if req.source_dir else None
    from model_serving.serve.ollama import manage

    return manage.generate_modelfile(settings, gguf, source_dir=source, system=req.system, num_ctx=req.num_ctx)


def ollama_check_modelfile(settings: Settings, req: CheckModelfileRequest) -> manage.ModelfileCheck:
    """Check a Modelfile, line by line."""
    from model_serving.serve.ollama import manage

    return manage.check_modelfile(settings, confine(req.path, settings.roots, what="Modelfile"))


# --- publish (issue 12) ---
def publish_model(settings: Settings, req: PublishRequest, progress: Progress) -> PublishResult:
    """Publish a deploy's GGUFs and card to the Hub, then verify."""
    from model_serving.publish.push import publish

    return publish(settings, req, progress)
# --- end publish ---


# --- production bundle (issue 11) ---
def plan_production(settings: Settings, req: PlanProductionRequest) -> Bundle:
    """Size a model for a GPU (L4-24GB.. cpu); write its Kubernetes bundle."""
    from model_serving.cluster.bundle import plan_production

    return plan_production(settings, req)
# --- end production bundle ---


# --- monitoring and cost (issue 11) ---
def serving_metrics(settings: Settings, req: NoInput) -> MetricsView:
    """Engines' own /metrics: queue, TTFT/e2e p50/p95, tok/s, KV use."""
    from model_serving.serve.metrics import RATE_INTERVAL_S, metrics_view

    return metrics_view(settings, interval_s=RATE_INTERVAL_S)


def cost_estimate(settings: Settings, req: CostRequest) -> CostEstimate:
    """Self-hosted USD/1M tokens at a bench's knee; tokens/day where it beats the API."""
    from model_serving.cluster.cost import estimate

    return estimate(settings, req)
# --- end monitoring and cost ---


# --- vLLM engine and bench compare (issue 14) ---
def engine_install(settings: Settings, req: EngineInstallRequest,
                   progress: Progress) -> VllmEnvironment | MergekitEnvironment | CompressorEnvironment:
    """Create and check an engine's own environment (managed venv): vLLM (or check the interpreter given), mergekit or llm-compressor."""
    from model_serving.serve.vllm.env import install

    if req.engine == "llmcompressor":
        from model_serving.quantize import compressor_env

        if req.python:
            raise InputError("--python names a vLLM interpreter; llm-compressor always gets its own managed venv.",
                             "Run `model-serving engines install llmcompressor` without --python.")
        return compressor_env.install(settings, progress)
    if req.engine == "mergekit":
        from model_serving.checkpoint import mergekit_env

        if req.python:
            raise InputError("--python names a vLLM interpreter; mergekit always gets its own managed venv.",
                             "Run `model-serving engines install mergekit` without --python.")
        return mergekit_env.install(settings, progress)

    return install(settings, req.python, progress)


def bench_compare(settings: Settings, req: BenchCompareRequest, progress: Progress) -> CompareResult:
    """One checkpoint on llama.cpp (GGUF at quant) vs vLLM, swept over levels."""
    from model_serving.bench.compare import run_compare

    return run_compare(settings, req, progress)
# --- end vLLM engine and bench compare ---


# --- versions (issue 23) ---
_VERSION_FIELDS = {"share": {"canary"}, "keep": {"prune"}, "plan": {"prune"}}


def model_versions(settings: Settings, req: VersionsRequest) -> VersionHistory | PruneResult | SwitchResult:
    """A name's versions: history, promote NAME@N, rollback NAME, canary NAME@N share%, prune (keep, plan)."""
    from model_serving.lifecycle import history, switch

    stray = [f for f, actions in _VERSION_FIELDS.items() if getattr(req, f) not in (None, False) and req.action not in actions]
    if stray:
        raise InputError(f"{', '.join(stray)} do not apply to {req.action}.", "Leave them out: share is canary's, keep and plan are prune's.")
    if req.action == "history":
        return history.history(settings, req.name)
    if req.action == "prune":
        return history.prune(settings, req.name, keep=req.keep, plan=req.plan)
    if req.action == "promote":
        return switch.promote(settings, req.name)
    if req.action == "rollback":
        return switch.rollback(settings, req.name)
    if req.share is None:
        raise InputError("canary needs the share of requests to send to the version.", f"Give share (percent, 0 ends the canary): canary {req.name} --share 10.")
    return switch.canary(settings, req.name, req.share)
# --- end versions ---


# --- eval against another version (issue 23) ---
def eval_versions(settings: Settings, req: EvalRequest, progress: Progress) -> EvalReport:
    """Compare two served versions (NAME@N vs NAME@live) on EVALS.jsonl: pass rates, F1, perplexity, bench, intervals, verdict."""
    from model_serving.lifecycle.evals import run_eval

    return run_eval(settings, req, progress)
# --- end eval ---
