"""`model-serving engines install vllm|mergekit|llmcompressor`: a tool's own environment on this machine (CLI only: minutes of pip, an operator step)."""

from __future__ import annotations

import click

from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.requests import EngineInstallRequest
from model_serving.verbs import engine_install


@click.group("engines")
def engines_group() -> None:
    """Install the environments of engines and tools that do not share ours (vLLM, mergekit, llm-compressor)."""


@engines_group.command("install")
@from_model(EngineInstallRequest, positional=("engine",))
def install_cmd(app: App, req: EngineInstallRequest) -> None:
    """Create and check vLLM's managed venv (CPU build, or CUDA where nvidia-smi answers; --python: use that interpreter) or
    mergekit's or llm-compressor's (pinned, CPU torch); resumable."""
    result = app.run(f"installing {req.engine}", lambda p: engine_install(app.settings, req, p))
    app.show(result)


def register(group: click.Group) -> None:
    group.add_command(engines_group)
