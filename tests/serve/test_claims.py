"""Names are claimed atomically: two starts of one name at once give one engine, one record and one clear refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from model_serving.errors import InputError
from model_serving.requests import NameRequest, ServeStartRequest
from model_serving.serve import processes, registry
from model_serving.serve.registry import ServedModel, list_models
from model_serving.settings import Settings
from model_serving.verbs import serve_start, serve_stop

HOLDER = """
import sys, time
from model_serving.serve import registry
from model_serving.settings import Settings
settings = Settings.from_env(roots=[sys.argv[1]], home=sys.argv[2])
with registry.claim(settings, "held"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_two_starts_of_one_name_at_once_give_one_engine_and_a_refusal_naming_the_winner(settings: Settings, smollm2_gguf: Path,
                                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVING_GATEWAY", "off")  # the gateway has its own tests; here only the name's engine and record count
    barrier = threading.Barrier(2)
    won: list[ServedModel] = []
    lost: list[InputError] = []

    def start() -> None:
        barrier.wait()
        try:
            won.append(serve_start(settings, ServeStartRequest(gguf_path=str(smollm2_gguf), name="twin", ctx_size=256, parallel=1)))
        except InputError as exc:
            lost.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    try:
        assert len(won) == 1 and len(lost) == 1
        # The loser names the winner: its claim (this process, as both are threads here) while it starts, or its URL and pid once it serves.
        assert (f"Another start of 'twin' is under way (process {os.getpid()}, since " in lost[0].cause
                or f"already served at {won[0].base_url} (pid {won[0].pid})" in lost[0].cause), lost[0].cause
        assert "serve list" in lost[0].next_step or "serve stop" in lost[0].next_step
        [record] = list_models(settings)
        assert record.pid == won[0].pid and record.state == "running"
    finally:
        serve_stop(settings, NameRequest(name="twin"))
    assert list_models(settings) == [] and not processes.alive(won[0].pid)
    assert sorted(p.name for p in registry.directory(settings).iterdir()) == ["twin.log"]  # no record, no claim, no temporary


def test_a_claim_held_by_another_process_is_refused_and_freed_when_that_process_dies(settings: Settings) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(settings.roots[0]), str(settings.home)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"Another start of 'held' is under way \(process {holder.pid}, since "):
            with registry.claim(settings, "held"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with registry.claim(settings, "held"):  # its owner died (SIGKILL): the kernel dropped the lock, so the claim is free
        assert registry.claim_path(settings, "held").exists()
    assert not registry.claim_path(settings, "held").exists()


def test_record_writes_use_a_temporary_name_of_their_own(settings: Settings, tmp_path: Path) -> None:
    """Two writers of one record at once: each renames its own temporary file, neither fails and no temporary is left."""
    model = ServedModel(name="w", source=str(tmp_path / "w.gguf"), base_url="http://127.0.0.1:1", port=1, pid=2**22 + 9, ctx_size=256,
                        parallel=1, threads=1, started_at="2026-01-01T00:00:00+00:00", log_path=str(tmp_path / "w.log"))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(200):
                registry.save(settings, model)
        except BaseException as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in registry.directory(settings).iterdir()) == ["w.json"]


def test_an_old_record_reads_its_gguf_path_as_source_and_a_router_record_as_replicas(settings: Settings) -> None:
    record = {"name": "old", "gguf_path": "/m/old.gguf", "base_url": "http://127.0.0.1:1", "port": 1, "pid": 2**22 + 7, "ctx_size": 256,
              "parallel": 1, "threads": 1, "started_at": "2026-01-01T00:00:00+00:00", "log_path": "/x.log",
              "adapters": [{"name": "a", "gguf_path": "/m/a.gguf"}], "router": "round_robin"}
    registry.record_path(settings, "old").write_text(json.dumps(record))
    [model] = list_models(settings)
    assert model.source == "/m/old.gguf" and model.adapters[0].source == "/m/a.gguf" and model.engine == "replicas"
    assert "source" in model.model_dump() and "gguf_path" not in model.model_dump()
