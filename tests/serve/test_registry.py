"""The embedded engine's registry: one record per name, and no two names share one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from model_serving.errors import InputError
from model_serving.serve import registry
from model_serving.serve.embedded.engine import list_models, start_model, stop_model
from model_serving.settings import Settings


def test_record_keys_are_injective() -> None:
    names = ["m:1", "m_1", "m-1", "m.1", "m1", "a:b:c", "a_b:c", "a:b_c"]
    assert len({registry.key(n) for n in names}) == len(names)
    assert registry.key("m:1") == "m%3A1" and registry.key("m_1") == "m_1"
    with pytest.raises(InputError, match="not a valid model name"):
        registry.key("../escape")


def test_m_colon_1_and_m_underscore_1_are_served_side_by_side(settings: Settings, tiny_gguf: Path) -> None:
    colon = start_model(settings, tiny_gguf, "m:1", ctx_size=256, parallel=1)
    underscore = start_model(settings, tiny_gguf, "m_1", ctx_size=256, parallel=1)
    try:
        served = {m.name: m for m in list_models(settings)}
        assert set(served) == {"m:1", "m_1"} and all(m.state == "running" for m in served.values())
        assert served["m:1"].pid != served["m_1"].pid and served["m:1"].log_path != served["m_1"].log_path
        assert sorted(p.name for p in registry.directory(settings).glob("*.json")) == ["m%3A1.json", "m_1.json"]
        assert httpx.get(f"{colon.base_url}/v1/models").json()["data"][0]["id"] == "m:1"
        assert httpx.get(f"{underscore.base_url}/v1/models").json()["data"][0]["id"] == "m_1"
        stop_model(settings, "m:1")
        assert [m.name for m in list_models(settings)] == ["m_1"]  # stopping one leaves the other
    finally:
        for name in ("m:1", "m_1"):
            if any(m.name == name for m in list_models(settings)):
                stop_model(settings, name)
    assert list_models(settings) == []


def test_a_record_under_the_old_lossy_key_is_moved_to_its_own(settings: Settings) -> None:
    old = registry.directory(settings) / "m_1.json"
    old.write_text(json.dumps({"name": "m:1", "gguf_path": "/x.gguf", "base_url": "http://127.0.0.1:1", "port": 1, "pid": 2**22 + 7,
                               "ctx_size": 256, "parallel": 1, "threads": 1, "started_at": "2026-01-01T00:00:00+00:00", "log_path": "/x.log"}))
    [model] = list_models(settings)
    assert model.name == "m:1" and model.state == "dead"  # no such process
    assert not old.exists() and registry.record_path(settings, "m:1").exists()


def test_a_record_that_does_not_match_its_file_is_ignored(settings: Settings) -> None:
    (registry.directory(settings) / "other.json").write_text(json.dumps({"name": "m:1", "gguf_path": "/x.gguf", "base_url": "http://127.0.0.1:1",
                                                                         "port": 1, "pid": 1, "ctx_size": 256, "parallel": 1, "threads": 1,
                                                                         "started_at": "2026-01-01T00:00:00+00:00", "log_path": "/x.log"}))
    (registry.directory(settings) / "broken.json").write_text("{")
    assert list_models(settings) == []
