"""Every timeout the serve floor declares fires: against a loopback socket that accepts and never answers.

The thing that hangs is a real child process (or a real listening socket); the code under test is
the real client, status, start-up wait, probe and stop. A hard alarm fails a test that would hang
instead of letting it block the suite; no test asserts how long anything took.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from model_serving.errors import ServingError
from model_serving.jobs import Progress
from model_serving.serve import registry
from model_serving.serve.embedded.engine import stop_model
from model_serving.serve.embedded.llamacpp_probe import probe_model
from model_serving.serve.ollama.client import OllamaClient
from model_serving.serve.ollama.manage import server_status
from model_serving.serve.processes import ENGINE_MARKERS, wait_healthy
from model_serving.serve.status import engine_status
from model_serving.settings import Settings

HANG = """
import signal, socket, sys
if sys.argv[2] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[3])))
sock.listen(16)
print("LISTENING", flush=True)
held = []
while True:  # accept and never answer
    held.append(sock.accept()[0])
"""


@contextlib.contextmanager
def hard_limit(seconds: int) -> Iterator[None]:
    """Fail (not hang) when the code under test blocks past any timeout it declares."""

    def fail(*_: object) -> None:
        raise AssertionError(f"blocked for {seconds} s: a declared timeout did not fire")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that completes the TCP handshake and then never sends a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # the kernel accepts up to 64 connections that nobody reads
        yield sock.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hanging_worker(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, int]]]:
    """Start a fake engine worker (its argv names our worker module, so the registry takes it for one) that never answers."""
    script = tmp_path / "hang.py"
    script.write_text(HANG)
    started: list[subprocess.Popen] = []

    def start(mode: str = "silent") -> tuple[subprocess.Popen, int]:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, str(script), ENGINE_MARKERS[0], mode, str(port)], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "LISTENING"
        return proc, port

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _record(settings: Settings, name: str, proc: subprocess.Popen, port: int, gguf: Path | None = None) -> registry.ServedModel:
    model = registry.ServedModel(name=name, gguf_path=str(gguf or settings.state_dir / "none.gguf"), base_url=f"http://127.0.0.1:{port}", port=port,
                                 pid=proc.pid, ctx_size=256, parallel=1, threads=1, started_at=datetime.now(UTC).isoformat(),
                                 log_path=str(settings.state_dir / "none.log"))
    registry.save(settings, model)
    return model


def test_the_ollama_client_gives_up_on_a_server_that_never_answers(settings: Settings, silent_port: int) -> None:
    with hard_limit(60), OllamaClient(settings, host=f"http://127.0.0.1:{silent_port}", timeout=0.5) as client:
        with pytest.raises(ServingError, match="did not answer the version request in time"):
            client.version()
        with pytest.raises(ServingError, match="did not answer chatting with smol in time"):
            client.chat("smol", [{"role": "user", "content": "hi"}])  # a stream: its read timeout counts too
        with pytest.raises(ServingError, match="did not answer the blob check in time"):
            client.has_blob("sha256:" + "0" * 64)
        assert client.is_up(timeout=0.5) is False


def test_the_upload_timeout_fires_and_is_retried(settings: Settings, ollama_double, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"x" * 1024)
    ollama_double.stall = {"POST /api/blobs/"}  # HEAD answers 404; the upload is read and never answered
    with hard_limit(60), OllamaClient(settings, host=ollama_double.url, timeout=0.5) as client:
        with pytest.raises(ServingError, match=r"broke off 2 times \(last: ReadTimeout"):
            client.push_blob(blob, "sha256:" + "0" * 64, attempts=2, retry_delay=0.01)
    assert ollama_double.requests.count(("POST", "/api/blobs/sha256:" + "0" * 64)) == 2


def test_the_connect_timeout_fires_when_the_accept_queue_is_full(settings: Settings) -> None:
    # A listener nobody accepts from, its backlog filled: the kernel drops further SYNs, so connecting hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        try:
            with hard_limit(60), OllamaClient(settings, host=f"http://127.0.0.1:{port}", timeout=30, connect_timeout=0.5) as client:
                with pytest.raises(ServingError, match="in time"):
                    client.version()
        finally:
            for filler in fillers:
                filler.close()


def test_status_reports_a_hung_ollama_as_unreachable_instead_of_waiting(settings: Settings, silent_port: int) -> None:
    settings.ollama_host = f"http://127.0.0.1:{silent_port}"
    with hard_limit(60):
        status = server_status(settings, details=True, timeout_s=0.5)
    assert status.reachable is False and "did not answer" in status.error and status.next_step


def test_status_reports_a_hung_engine_as_unhealthy(settings: Settings, hanging_worker) -> None:
    proc, port = hanging_worker()
    model = _record(settings, "hung", proc, port)
    with hard_limit(60):
        status = engine_status(model, timeout_s=0.5)
    assert status.model.name == "hung" and status.healthy is False and status.slots_total is None


def test_start_up_gives_up_on_an_engine_that_never_answers_health_and_kills_it(settings: Settings, hanging_worker, tmp_path: Path) -> None:
    proc, port = hanging_worker()
    log = tmp_path / "engine.log"
    log.write_text("")
    with hard_limit(60), pytest.raises(ServingError, match="did not become healthy within 1 s"):
        # each /health poll blocks until its own timeout; the start-up deadline ends the wait
        wait_healthy(proc, "hung", f"http://127.0.0.1:{port}", log, Progress(), timeout_s=1.0, poll_timeout_s=0.5)
    assert proc.poll() is not None  # killed, not left running


def test_start_up_reports_an_engine_that_exits(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    proc = subprocess.Popen([sys.executable, "-c", "print('cannot load model'); raise SystemExit(3)"], stdout=log.open("w"))
    with hard_limit(60), pytest.raises(ServingError, match=r"exited during start-up \(exit code 3\)") as err:
        wait_healthy(proc, "broken", f"http://127.0.0.1:{_free_port()}", log, Progress(), timeout_s=60)
    assert "cannot load model" in (err.value.detail or "")


def test_the_probe_gives_up_on_an_engine_that_never_answers(settings: Settings, hanging_worker, smollm2_gguf: Path) -> None:
    proc, port = hanging_worker()
    _record(settings, "hung", proc, port, gguf=smollm2_gguf)
    with hard_limit(60), pytest.raises(ServingError, match=r"did not answer /apply-template in time"):
        probe_model(settings, "hung", timeout_s=0.5)


def test_stop_kills_an_engine_that_ignores_sigterm_after_the_grace_period(settings: Settings, hanging_worker) -> None:
    proc, port = hanging_worker("ignore-term")
    _record(settings, "stubborn", proc, port)
    with hard_limit(60):
        stopped = stop_model(settings, "stubborn", grace_s=0.5)
        assert proc.wait(30) == -signal.SIGKILL
    assert stopped.state == "dead" and registry.list_models(settings) == []
