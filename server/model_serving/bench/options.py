"""From user arguments (CLI or MCP) to a BenchConfig: endpoint allow-listing, path confinement, engine lookup.

Both faces call `make_config`, so the rules are the same whichever one the user came through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_serving.bench.schema import SLO, Api, BenchConfig
from model_serving.errors import InputError
from model_serving.settings import Settings
from model_serving.util.paths import confine

# Imported inside functions: the serve floor, guarded, only when a result asks which of our engines served the model.


def _served_by_engine(settings: Settings, model: str) -> Any | None:
    try:
        from model_serving.serve.embedded import engine
    except ImportError:
        return None
    try:
        served = engine.get_model(settings, model)
    except InputError:
        return None
    return served if served.state == "running" else None


def _engine_build_at(settings: Settings, base_url: str) -> str | None:
    """The llama.cpp build of the engine we run at base_url (every result names the build it measured); None if not ours."""
    try:
        from model_serving.serve.status import engine_build_at
    except ImportError:
        return None
    return engine_build_at(settings, base_url)


def make_config(settings: Settings, *, model: str, endpoint: str | None = None, api: Api | None = None,
                prompts_file: str | None = None, output_dir: str | None = None, gguf: str | None = None,
                targets: dict[str, Any] | None = None, **values: Any) -> BenchConfig:
    """Resolve where the model is served and which files may be touched, then validate everything."""
    server_pid, gguf_path, engine_build = values.pop("server_pid", None), None, values.pop("engine_build", None)
    if endpoint:
        base_url = settings.resolve_endpoint(endpoint)  # only configured endpoints or loopback URLs
        api = api or ("ollama" if base_url == settings.ollama_host else "openai")
        engine_build = engine_build or _engine_build_at(settings, base_url)
    elif api == "ollama":
        base_url = settings.ollama_host
    else:
        served = _served_by_engine(settings, model)
        if served is None:
            raise InputError(f"No endpoint was given and the embedded engine serves no running model named {model!r}.",
                             "Register it (model-serving register) or pass --endpoint URL (or --api ollama).")
        base_url, api = served.base_url, "openai"
        server_pid, engine_build = served.pid, served.engine_build
        gguf_path = Path(served.source) if served.engine != "vllm" else None  # vLLM serves a checkpoint folder: no roofline
        if getattr(served, "completions_only", False):  # not a chat model: its chat route would measure a fallback template
            values["route"] = "completions"
    if gguf:
        gguf_path = confine(gguf, settings.roots, what="GGUF path")
    prompts = confine(prompts_file, settings.roots, what="prompt file") if prompts_file else None
    out = confine(output_dir, settings.roots, must_exist=False, what="output directory") if output_dir else None
    try:
        target_model = SLO(**(targets or {}))
    except ValueError as exc:
        raise InputError(f"Invalid targets: {exc}.", "Targets must be positive numbers.") from None
    if prompts is not None and values.get("prompt_source") is None:
        values["prompt_source"] = "jsonl"
    if values.get("prompt") and values.get("prompt_source") is None:
        values["prompt_source"] = "text"
    return BenchConfig.build(base_url=base_url, model=model, api=api or "openai", prompts_file=prompts, output_dir=out,
                             gguf_path=gguf_path, server_pid=server_pid, targets=target_model, engine_build=engine_build,
                             **{k: v for k, v in values.items() if v is not None})


def config_from_request(settings: Settings, request: Any) -> BenchConfig:
    """The bench input model both faces build (`requests.BenchRequest`) as a BenchConfig; a sweep takes no rate."""
    values = request.model_dump(exclude={"levels"})
    if getattr(request, "levels", None) and values.get("rate") is not None:
        raise InputError("A sweep runs closed loops at each level; it takes no rate.", "Leave out rate for a sweep, or levels for a Poisson run.")
    targets = {"ttft_ms": values.pop("ttft_ms"), "e2e_ms": values.pop("e2e_ms"), "request_throughput": values.pop("rps"),
               "memory_gb": values.pop("memory_gb"), "statistic": values.pop("statistic"), "error_rate": values.pop("error_rate")}
    profile = values.pop("profile")
    # a prompt or a prompt file given with the default profile means that prompt or file (make_config picks it)
    values["prompt_source"] = None if profile == "random" and (values.get("prompt") or values.get("prompts_file")) else profile
    values["output_dir"] = values.pop("output")
    return make_config(settings, targets=targets, **values)
