"""LoRA adapters on one embedded engine: the NAME=PATH list checked before start, and each adapter probed after.

One llama.cpp process loads the base and every adapter (each at scale 0); the front (front.py) maps
each adapter's name to its `lora` entry, so switching adapters is a request field, not a restart.
The probe asks the base and each adapter the same greedy question: an adapter must change the answer
or at least its log-probabilities, else it is not applied (or was never trained: peft starts B at 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from model_serving.errors import InputError, ServingError
from model_serving.gguf.adapter import check_lora
from model_serving.gguf.info import GGUFInfo
from model_serving.serve import probe_checks as probe
from model_serving.serve.registry import ServedAdapter, ServedModel, check_name
from model_serving.settings import Settings
from model_serving.util.paths import confine

PROBE_TOKENS = 8  # enough to see a different answer; short on a loaded CPU
LOGPROB_TOLERANCE = 1e-3  # beyond float noise between two runs of the same weights


def parse_lora(settings: Settings, items: list[str], base_name: str, base: GGUFInfo) -> list[ServedAdapter]:
    """NAME=PATH items as adapters: valid distinct names (not the base's), confined paths, GGUF LoRAs that fit the base."""
    adapters: list[ServedAdapter] = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"lora {item!r} is not NAME=PATH.", "Pass each adapter as NAME=ADAPTER.gguf, e.g. --lora support=./support-lora.gguf.")
        check_name(name)
        if name == base_name or name in (a.name for a in adapters):
            raise InputError(f"The name {name!r} is given twice (adapters and the base each need their own).",
                             "Give every adapter a name of its own, different from --name.")
        file = confine(path, settings.roots, what="adapter file")
        check_lora(base, file)
        adapters.append(ServedAdapter(name=name, source=str(file)))
    return adapters


def _greedy(client: httpx.Client, model: ServedModel, name: str) -> tuple[str, list[float]]:
    body: dict[str, Any] = {"model": name, "messages": probe.PROBE_MESSAGES, "max_tokens": PROBE_TOKENS, "temperature": 0,
                            "logprobs": True, "top_logprobs": 1}
    try:
        reply = client.post("/v1/chat/completions", json=body)
    except httpx.HTTPError as exc:
        raise ServingError(f"The engine for {model.name} did not answer the probe for {name} ({type(exc).__name__}).",
                           f"Read the engine log at {model.log_path}") from None
    if reply.status_code != 200:
        raise ServingError(f"The engine for {model.name} answered HTTP {reply.status_code} to the probe for {name}.",
                           f"Read the engine log at {model.log_path}", detail=reply.text[:500])
    choice = reply.json()["choices"][0]
    content = (choice.get("logprobs") or {}).get("content") or []
    return choice["message"].get("content") or "", [float(t.get("logprob", 0.0)) for t in content]


def probe_adapters(model: ServedModel, *, timeout_s: float = 120.0) -> list[ServedAdapter]:
    """Each adapter with whether its greedy answer (or its log-probabilities) differs from the base's on the probe question."""
    with httpx.Client(base_url=model.base_url, timeout=timeout_s) as client:
        base_answer, base_logprobs = _greedy(client, model, model.name)
        for adapter in model.adapters:
            answer, logprobs = _greedy(client, model, adapter.name)
            moved = len(logprobs) != len(base_logprobs) or any(abs(a - b) > LOGPROB_TOLERANCE for a, b in zip(logprobs, base_logprobs, strict=False))
            adapter.answer, adapter.differs_from_base = answer[:200], answer != base_answer or moved
    return model.adapters


def same_as_base(adapters: list[ServedAdapter]) -> list[str]:
    return [a.name for a in adapters if a.differs_from_base is False]


def lora_argv(adapters: list[ServedAdapter], engine_port: int, native_server: Path | None) -> list[str]:
    """The worker's arguments for the adapters: each NAME=PATH, llama.cpp's own port behind the front, and the native
    llama-server the worker runs as its child."""
    if not adapters:
        return []
    return ([arg for a in adapters for arg in ("--lora", f"{a.name}={Path(a.source)}")] + ["--engine-port", str(engine_port)]
            + ["--native", str(native_server)])
