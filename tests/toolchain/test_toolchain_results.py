"""Every bench and deploy result names the llama.cpp build it measured: revision and patches, or why the wheel served."""

from __future__ import annotations

import os

from model_serving.bench.options import make_config
from model_serving.serve import registry
from model_serving.serve.registry import ServedModel
from model_serving.serve.status import engine_build_at
from model_serving.settings import Settings

BUILD = "native (llama.cpp 0c1e570 of llama-cpp-python-0.3.36, avx2; patches: 0001-a.patch, 0002-b.patch)"


def test_a_bench_of_our_engine_records_its_build(settings: Settings) -> None:
    record = ServedModel(name="smol", gguf_path="/x.gguf", base_url="http://127.0.0.1:18431", port=18431, pid=os.getpid(), ctx_size=512,
                         parallel=1, threads=1, started_at="now", log_path="/dev/null", engine_build=BUILD)
    registry.save(settings, record)
    assert engine_build_at(settings, "http://127.0.0.1:18431/v1") == BUILD
    assert engine_build_at(settings, "http://127.0.0.1:9") is None  # not an engine we run: nothing is claimed
    config = make_config(settings, model="smol", endpoint="http://127.0.0.1:18431")
    assert config.engine_build == BUILD
    assert make_config(settings, model="other", endpoint="http://127.0.0.1:9").engine_build is None
