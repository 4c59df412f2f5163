"""The one table of engines: a name, its class. Every verb that takes an engine name looks it up here.

Adding an engine is one module (a class with the `Engine` protocol's methods, serve/engine_protocol.py; an engine
whose process we run subclasses `RecordedEngine`, serve/engine_base.py) and one line below (plus its name in
`EngineName`, which tests/serve/test_engines.py checks against this table).
"""

from __future__ import annotations

from model_serving.errors import InputError
from model_serving.jobs import Progress
from model_serving.serve.embedded.engine import LlamaCppEngine
from model_serving.serve.engine_protocol import Engine, EngineName, StartOptions
from model_serving.serve.gateway import preset
from model_serving.serve.gateway.llama_router import GatewayEngine, ensure_gateway
from model_serving.serve.ollama.target import OllamaTarget
from model_serving.serve.processes import terminate
from model_serving.serve.registry import ServedModel, get_model
from model_serving.serve.replicas.vllm_router import ReplicasEngine
from model_serving.serve.vllm.engine import VllmEngine
from model_serving.settings import Settings

ENGINES: dict[str, type[Engine]] = {
    "embedded": LlamaCppEngine,
    "vllm": VllmEngine,
    "replicas": ReplicasEngine,
    "gateway": GatewayEngine,
    "ollama": OllamaTarget,
}


def engine(name: EngineName | str) -> Engine:
    """The engine registered under `name`; an unknown name is refused, listing the known ones."""
    found = ENGINES.get(name)
    if found is None:
        raise InputError(f"No engine is named {name!r}.", f"Use one of {', '.join(ENGINES)}.")
    return found()


def start(settings: Settings, options: StartOptions, progress: Progress | None = None) -> ServedModel:
    """`serve start`: replicas when asked for, else the named engine; the gateway then lists the new name."""
    kind = "replicas" if options.replicas is not None or options.policy is not None else options.engine
    model = engine(kind).start(settings, options, progress or Progress())
    assert isinstance(model, ServedModel)
    if kind == "embedded":
        ensure_gateway(settings)  # the one endpoint lists it too; off with MODEL_SERVING_GATEWAY=off or `serve gateway stop`
    return model


def stop(settings: Settings, name: str) -> ServedModel:
    """Stop a recorded name with its own engine; the gateway's preset then stops listing it (and a gateway left empty stops)."""
    model = get_model(settings, name)
    stopped = engine(model.engine).stop(settings, name)
    assert isinstance(stopped, ServedModel)
    preset.sync(settings, stop=terminate)
    return stopped
