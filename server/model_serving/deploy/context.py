"""What a deploy carries from step to step: the plan, the request, and each step's outputs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.checkpoint.mergekit_merge import MergeSpec
from model_serving.checkpoint.template_check import TemplateFile
from model_serving.lifecycle.store import Serving, Version
from model_serving.requests import DeployRequest, DeployTarget
from model_serving.settings import Settings

Engine = DeployTarget  # the engine a deploy ends on: one of serve/engines.py's names
SourceKind = Literal["default", "checkpoint", "gguf", "hub", "adapter", "mergekit"]


class PlannedStep(BaseModel):
    step: str
    action: Literal["run", "skip", "reuse"]
    detail: str


class StepRecord(BaseModel):
    step: str
    status: Literal["done", "reused"]
    seconds: float
    output: str | None = None
    input_sha256: str | None = None
    output_sha256: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)


class DeployResult(BaseModel):
    name: str
    target: Engine
    target_reason: str = Field(default="", description="Why this target: asked for, or what `auto` found")
    plan: list[PlannedStep]
    planned_only: bool = False
    steps: list[StepRecord] = []
    endpoint: str | None = Field(default=None, description="Where the model answers chat requests")
    engine_build: str | None = Field(default=None, description="The embedded engine's llama.cpp build (revision, patches)")
    answer: str | None = Field(default=None, description="The probe's answer, proof that the model talks and stops")
    chat_features: list[str] = Field(default_factory=list, description="Reasoning and tool calls: what the probe proved, or what the engine cannot do for this template")
    verdicts: list[dict[str, Any]] = []
    quality: dict[str, Any] | None = None
    manifest_path: str | None = None
    chat_template: dict[str, str] | None = Field(default=None, description="The template file given to the engine: path and sha256")
    serves: str = Field(default="chat", description="'chat', or 'not a chat model: /v1/completions only'")
    total_seconds: float = 0.0
    version: int | None = Field(default=None, description="The version of the name this deploy made (NAME@N)")
    live: bool | None = Field(default=None, description="Whether it is live; if not it is served beside the live one")
    next_steps: list[str] = Field(default_factory=list)
    reused: str | None = Field(default=None, description="The served version an unchanged redeploy reused instead of making a new one")


@dataclass(frozen=True)
class Source:
    """The model to deploy, as found before any work: what it is and where."""

    kind: SourceKind
    label: str  # what the manifest records as the source: a resolved path, a repo id, or the default model
    model_name: str  # the basis of the default deploy name
    path: Path | None = None  # the checkpoint folder or .gguf file; None for a Hub id (fetched by export)
    file_type: str | None = None  # a GGUF source's type, e.g. Q4_1
    quantized: bool = False
    parameter_count: int | None = None
    context_length: int | None = None  # tokens it was trained for, when the source says
    base: Path | None = None  # a LoRA adapter's base folder: the merge step's other input
    pulled: bool = False  # a GGUF picked from a Hub repo by its quant: served as it is
    merge: MergeSpec | None = None  # a mergekit config (path): the checked merge the merge step runs


@dataclass(frozen=True)
class VersionPlan:
    """The version a deploy makes: its number, whether it goes live at once, and a served model it adopts as version 1."""

    public: str  # the name clients use
    n: int
    live: bool  # live at once (the first version, --replace, or nothing serves the name); else served beside
    adopt: str | None = None  # a model served under the name with no versions recorded: recorded as version 1 first
    routed: bool = False  # live through the gateway's route, served beside as NAME@N: the old version keeps serving for rollback
    reuse: Version | None = None  # the version serving this source with these settings: probed and benched, no new version
    restart: bool = False  # with reuse: its engine stopped, so it is started again from the version's artifact


def default_checkpoint(out_dir: Path, source: Source) -> Path:
    """Where prepare builds the default model's Hugging Face checkpoint: in the deploy's (the version's) folder."""
    return out_dir / f"{source.model_name.lower()}-hf"


def version_label(version: VersionPlan) -> str:
    """NAME for version 1, NAME@N after it: the version's folder and manifest name."""
    return version.public if version.n == 1 else f"{version.public}@{version.n}"


@dataclass(frozen=True)
class DeployPlan:
    """Every decision a deploy makes, taken before it writes anything."""

    name: str
    target: Engine
    target_reason: str
    out_dir: Path
    source: Source
    qtype: str | None  # None: serve the export (or the GGUF source) as it is
    steps: list[PlannedStep]
    chat_template: TemplateFile | None = None  # the user's template, which replaces the source's on every engine
    completions: bool = False  # served for /v1/completions only: no chat template, a completion probe
    version: VersionPlan | None = None  # which version of the public name this deploy makes (lifecycle/)
    serving: Serving | None = None  # the settings the version records: a later deploy with equal ones may reuse it

    @property
    def checkpoint(self) -> Path | None:
        """The Hugging Face checkpoint export reads: built by prepare for the default model."""
        if self.source.kind == "default":
            return default_checkpoint(self.out_dir, self.source)
        if self.source.kind in ("adapter", "mergekit"):  # the merge step writes it
            return self.out_dir / f"{self.name}-merged"
        return self.source.path if self.source.kind == "checkpoint" else None

    @property
    def f16_path(self) -> Path:
        return self.out_dir / f"{self.name}-f16.gguf"

    @property
    def quant_path(self) -> Path:
        return self.out_dir / f"{self.name}-{self.qtype}.gguf"

    @property
    def manifest_path(self) -> Path:
        """One manifest per version, even for versions that share an output folder."""
        return self.out_dir / f"{version_label(self.version) if self.version else self.name}.deploy.json"

    def action(self, step: str) -> str:
        return next((s.action for s in self.steps if s.step == step), "skip")


@dataclass
class DeployContext:
    settings: Settings
    request: DeployRequest
    plan: DeployPlan
    result: DeployResult
    source_sha256: str | None = None  # the checkpoint's tree hash, or a GGUF source's file hash
    f16: Path | None = None  # the export; None for a GGUF source
    f16_sha256: str | None = None
    served: Path | None = None  # what register serves: the quantized file, the export, or a GGUF source as it is
    served_sha256: str | None = None
    bench_base: str = ""
    bench_api: Literal["openai", "ollama"] = "openai"
    server_pid: int | None = None

    def record(self, step: str, began: float, *, reused: bool, output: Path | None = None, input_sha256: str | None = None,
               output_sha256: str | None = None, summary: dict[str, Any] | None = None) -> None:
        self.result.steps.append(StepRecord(
            step=step, status="reused" if reused else "done", seconds=round(time.perf_counter() - began, 3),
            output=str(output) if output else None, input_sha256=input_sha256, output_sha256=output_sha256, summary=summary or {}))
