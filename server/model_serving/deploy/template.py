"""The plan's template decision: the user's file, the source's own template, or completions only; refused up front otherwise."""

from __future__ import annotations

from model_serving.checkpoint.template_check import TemplateFile, engine_template, load, source_template
from model_serving.requests import DeployRequest
from model_serving.settings import Settings

from .context import DeployPlan, Source

COMPLETIONS_ONLY = "not a chat model: /v1/completions only"


def check_template(settings: Settings, source: Source, request: DeployRequest) -> TemplateFile | None:
    """The template file to serve with (None: the source's own, or none for completions); refused before any engine starts
    when the source's template is missing or cannot render a plain conversation."""
    given, completions = request.chat_template, request.completions
    if given is not None and completions:
        engine_template(settings.roots, source.label, None, given, completions)  # refuses the pair, in the engines' words
    if given is not None:
        return load(given, settings.roots)
    if not completions and source.kind in ("gguf", "checkpoint") and source.path is not None:
        # The default model has a template; a Hub id is read at export; an adapter's template is chosen by the merge.
        engine_template(settings.roots, source.path.name, source_template(source.kind, source.path), None, False)
    if not completions and source.merge is not None:
        # mergekit copies the tokenizer and template from base_model, else from any one input: each must do
        for donor in [source.merge.base] if source.merge.base else source.merge.models:
            engine_template(settings.roots, donor.name, source_template("checkpoint", donor), None, False)
    return None


def template_text(plan: DeployPlan) -> str:
    """What the register step says about the template."""
    if plan.completions:
        return f" for completions only ({COMPLETIONS_ONLY})"
    if plan.chat_template is not None:
        return f" with the chat template {plan.chat_template.path}"
    return ""


def probe_text(plan: DeployPlan) -> str:
    if plan.completions:
        return "probe /v1/completions: non-empty text that stops at max_tokens"
    return "probe: its template, an answer that stops" if plan.target == "vllm" else "probe: it must answer and stop"
