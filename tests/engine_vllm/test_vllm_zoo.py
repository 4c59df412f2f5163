"""A zoo family on vLLM CPU: the checkpoint served and probed (template, answer, stop). benchmarks/model_zoo.py runs them all."""

from __future__ import annotations

from pathlib import Path

import pytest
from zoo import BY_NAME, build
from zoo_steps import tool_probe_off, vllm_row

from model_serving.settings import Settings


@pytest.mark.slow
def test_llama3_family_serves_and_probes_on_vllm(vllm_python: str, settings: Settings, artifacts: Path, smollm2_gguf: Path) -> None:
    family = BY_NAME["llama3"]
    checkpoint = build(family, artifacts / "zoo" / family.name, smollm2_gguf)
    with tool_probe_off():  # a wired model cannot decide to call a tool (zoo_steps says why)
        row = vllm_row(settings, family, checkpoint)
    assert row.status == "pass", f"{row.cause} {row.next_step}"
    assert row.detail["template_matches"] and row.detail["finish_reason"] == "stop"
    assert row.detail["answer"].strip() == "Paris"
