"""After /api/create: check what Ollama stored, probe the model, and compare its prompts with the Jinja template.

Any mismatch raises VerificationFailed with every problem in its detail; registration then puts
the model name back the way it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from model_serving.errors import VerificationFailed
from model_serving.jobs import Progress
from model_serving.serve.chat_features import thinks
from model_serving.serve.ollama.client import OllamaClient
from model_serving.serve.ollama.fidelity import FidelityReport, GoRenderer, check_live, check_rendered, to_ollama_messages
from model_serving.serve.ollama.ollama_probe import gguf_tokenizer, probe_model
from model_serving.serve.ollama.plan import ModelfilePlan
from model_serving.serve.probe_checks import PROBE_MESSAGES, ProbeResult, expected_tokens
from model_serving.settings import Settings


class StoredModel(BaseModel):
    """What /api/show reports after creation."""

    template: str
    parameters: dict[str, list[str]]
    system: str = ""
    capabilities: list[str] = Field(default_factory=list)
    family: str = ""
    quantization_level: str = ""
    parameter_size: str = ""


@dataclass
class Proof:
    stored: StoredModel
    probe: ProbeResult
    live: FidelityReport | None = None
    rendered: FidelityReport | None = None


def verify_stored(client: OllamaClient, name: str, plan: ModelfilePlan, system: str | None) -> StoredModel:
    """/api/show must give back the template, stop tokens, num_ctx and SYSTEM that were sent."""
    info = client.show(name)
    params = info.parameter_values()
    problems = []
    if plan.choice.strategy == "go" and info.template != plan.go_template:
        problems.append("the stored TEMPLATE differs from the one sent")
    if plan.choice.strategy == "gguf" and (not info.template or info.template.strip() != (plan.jinja or "").strip()):
        problems.append("Ollama does not show the GGUF's chat template, so it will not use it")
    missing = [s for s in plan.stops if s not in params.get("stop", [])]
    if missing:
        problems.append(f"stop tokens missing: {missing}")
    if params.get("num_ctx", [None])[0] not in (str(plan.num_ctx), plan.num_ctx):
        problems.append(f"num_ctx is {params.get('num_ctx')}, expected {plan.num_ctx}")
    if system is not None and info.system != system:
        problems.append("the SYSTEM message differs")
    if problems:
        raise VerificationFailed(f"Ollama stored {name} differently from what was sent: {problems[0]}.",
                                 "Check the server version (`model-serving ollama version`) and run again with --replace.", detail="; ".join(problems))
    return StoredModel(template=info.template, parameters=params, system=info.system, capabilities=info.capabilities, family=info.details.family,
                       quantization_level=info.details.quantization_level, parameter_size=info.details.parameter_size)


def _chat_counter(client: OllamaClient, name: str) -> Callable[[Any], int]:
    def count(conv: Any) -> int:
        client.unload(name)  # a cached prefix would lower prompt_eval_count
        result = client.chat(name, to_ollama_messages(conv.messages), tools=conv.tools, options={"num_predict": 1, "temperature": 0})
        return result.prompt_eval_count

    return count


def _template_checks(client: OllamaClient, name: str, plan: ModelfilePlan, system: str | None,
                     go_renderer: GoRenderer | None) -> tuple[FidelityReport | None, FidelityReport | None]:
    info, choice = plan.info, plan.choice
    if not plan.jinja:
        return None, None
    live = check_live(_chat_counter(client, name), plan.jinja, gguf_tokenizer(Path(info.path)), bos=info.bos_token or "", eos=info.eos_token or "",
                      add_bos=bool(info.add_bos_token), template_uses_tools=choice.supports_tools, system=system)
    rendered = None
    if go_renderer is not None and plan.go_template is not None:
        rendered = check_rendered(plan.jinja, plan.go_template, go_renderer, bos=info.bos_token or "", eos=info.eos_token or "",
                                  bos_left_to_runtime=choice.bos_left_to_runtime, template_uses_tools=choice.supports_tools, notes=choice.notes)
    return live, rendered


def prove(client: OllamaClient, settings: Settings, name: str, plan: ModelfilePlan, *, system: str | None, go_renderer: GoRenderer | None,
          progress: Progress) -> Proof:
    """Stored as sent, answers and stops with every prompt token seen, and builds the Jinja template's prompts."""
    progress.update(0.86, "checking what Ollama stored")
    stored = verify_stored(client, name, plan, system)
    progress.update(0.88, "probing the model")
    info = plan.info
    expected = None
    if plan.jinja:
        expected = expected_tokens(plan.jinja, PROBE_MESSAGES, gguf_tokenizer(Path(info.path)), bos=info.bos_token or "", eos=info.eos_token or "",
                                   add_bos=bool(info.add_bos_token), system=system)
    probe = probe_model(settings, name, expected_prompt_tokens=expected, expect_tools=plan.choice.supports_tools,
                        expect_reasoning=bool(plan.jinja and thinks(plan.jinja)), client=client)
    progress.update(0.93, "comparing prompts with the Jinja template")
    live, rendered = _template_checks(client, name, plan, system, go_renderer)
    failed = [r for r in (live, rendered) if r is not None and not r.passed]
    if not probe.ok or failed:
        raise VerificationFailed(
            f"{name} was created but does not behave like its checkpoint: {(probe.problems or ['its prompts differ from the Jinja template'])[0]}.",
            "Check the stop tokens and template listed below; try --template go or --template gguf, or pass --num-ctx.",
            detail="\n".join([*("probe: " + p for p in probe.problems), *(r.describe() for r in failed)]),
        )
    return Proof(stored=stored, probe=probe, live=live, rendered=rendered)
