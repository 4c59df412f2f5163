"""Every child kind gets the scrubbed environment and dies with its parent: read from /proc, not assumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from fault_kit import CONVERTER, ENGINE_WORKER, QUALITY_CHILD, QUANTIZE_WORKER, BackgroundWork, children_of_ours, environ, wait_for
from quant_helpers import place

from model_serving.errors import Cancelled
from model_serving.settings import Settings
from model_serving.util.process import child_env, is_secret, launcher_argv

SECRETS = {"HF_TOKEN": "secret", "HUGGING_FACE_HUB_TOKEN": "secret", "OLLAMA_API_KEY": "secret", "MY_SERVICE_SECRET": "secret",
           "DB_PASSWORD_FILE": "secret", "GITHUB_TOKEN": "secret", "AWS_SECRET_ACCESS_KEY": "secret"}


@pytest.fixture
def secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_SERVING_PLAIN", "kept")


def test_secret_names() -> None:
    for name in SECRETS:
        assert is_secret(name), name
    for name in ("PATH", "HOME", "OMP_WAIT_POLICY", "KEYBOARD_LAYOUT", "TOKENIZERS_PARALLELISM", "HF_HOME", "LLAMA_CPP_DIR"):
        assert not is_secret(name), name
    env = child_env({"OMP_WAIT_POLICY": "PASSIVE", "PATH": None, "EXTRA_TOKEN": "leak"})
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "PATH" not in env and "EXTRA_TOKEN" not in env


def _environ_of_child(work: BackgroundWork, marker: str, kind: str) -> dict[str, str]:
    """Wait for the child to appear, read its environment, then cancel the work and check the child is gone."""
    try:
        pid = wait_for(lambda: children_of_ours(marker, (kind,)), 180, f"a {kind} child")[0]  # type: ignore[index]
        seen = environ(pid)
    finally:
        work.progress.cancel()
        work.join()
    wait_for(lambda: not children_of_ours(marker, (kind,)), 30, f"the {kind} child to end after cancel")
    return seen


def _assert_scrubbed(seen: dict[str, str]) -> None:
    assert "PATH" in seen and seen["MODEL_SERVING_PLAIN"] == "kept"  # the environment was read, and it is ours
    assert seen["MODEL_SERVING_PARENT_PID"] == str(os.getpid())
    leaked = sorted(set(SECRETS) & set(seen))
    assert not leaked, f"secrets reached the child: {leaked}"


def test_quantize_worker_environment(settings: Settings, secrets_set: None, f16_source: Path, tmp_path: Path) -> None:
    from model_serving.quantize.quantizer import quantize_gguf

    f16 = place(f16_source, tmp_path)
    work = BackgroundWork(lambda p: quantize_gguf(settings, f16, None, "Q4_K_M", verify=False, threads=1, progress=p))
    _assert_scrubbed(_environ_of_child(work, str(tmp_path), QUANTIZE_WORKER))
    assert isinstance(work.error, Cancelled)


def test_quality_child_environment(settings: Settings, secrets_set: None, f16_source: Path, tmp_path: Path) -> None:
    from model_serving.quantize.quality import compare_quality

    f16 = place(f16_source, tmp_path)
    work = BackgroundWork(lambda p: compare_quality(settings, f16, f16, prompts=["Name a colour."], max_tokens=4, progress=p))
    seen = _environ_of_child(work, str(tmp_path), QUALITY_CHILD)
    _assert_scrubbed(seen)
    assert seen.get("OMP_WAIT_POLICY") == os.environ.get("OMP_WAIT_POLICY")  # OpenMP's default unless the user set one


def test_converter_environment(settings: Settings, secrets_set: None, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from model_serving.checkpoint.export import export_gguf

    work = BackgroundWork(lambda p: export_gguf(settings, str(tiny_checkpoint), str(tmp_path / "tiny-f16.gguf"), progress=p))
    seen = _environ_of_child(work, str(tmp_path), CONVERTER)
    _assert_scrubbed(seen)
    assert "NO_LOCAL_GGUF" not in seen


def test_engine_worker_environment(settings: Settings, secrets_set: None, tiny_gguf: Path, tmp_path: Path) -> None:
    from model_serving.serve.embedded.engine import start_model

    gguf = place(tiny_gguf, tmp_path)
    work = BackgroundWork(lambda p: start_model(settings, gguf, "env-check", ctx_size=256, parallel=1, threads=1, progress=p))
    _assert_scrubbed(_environ_of_child(work, str(tmp_path), ENGINE_WORKER))


SLEEPER = """
import sys, time
from sibling import WORD  # the script's own folder is on sys.path, as under `python script.py`
print(WORD, sys.argv[1:], flush=True)
time.sleep(600)
"""

PARENT = """
import sys
from model_serving.util.process import spawn
proc = spawn(sys.argv[1:], stdout=None, stderr=None)
print(proc.pid, flush=True)
proc.wait()
"""


def test_a_launched_script_dies_with_its_parent(tmp_path: Path) -> None:
    """kill -9 of the process that started a child: the kernel kills the child too (parent-death signal)."""
    (tmp_path / "sibling.py").write_text("WORD = 'ready'\n")
    script = tmp_path / "sleeper.py"
    script.write_text(textwrap.dedent(SLEEPER))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *launcher_argv(script, "--flag", "x")], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "ready ['--flag', 'x']"  # run as __main__ with its own argv
    assert os.getpgid(child) == child  # it leads its own process group
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), 30, "the launched child to die with its parent")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_a_served_engine_outlives_the_cli_that_started_it(tiny_gguf: Path, tmp_path: Path) -> None:
    """The engine worker dies with its parent only while it starts; once serving it is a daemon, as `serve start` promises."""
    from fault_kit import Cli

    gguf = place(tiny_gguf, tmp_path)
    started = Cli(tmp_path / "home", "--root", str(tmp_path), "--json", "serve", "start", str(gguf), "--name", "outlives", "--ctx-size", "256",
                  "--parallel", "1", "--threads", "1")
    code, lines = started.finish(timeout=300)
    assert code == 0, lines[-5:]
    try:
        model = json.loads(started.proc.stdout.read())  # type: ignore[union-attr]
        assert httpx.get(f"{model['base_url']}/health", timeout=10).status_code == 200  # serving, with its parent gone
        pids = children_of_ours(str(tmp_path), (ENGINE_WORKER,))
        assert pids == [model["pid"]] and os.getpgid(model["pid"]) == model["pid"]
    finally:
        stopped = Cli(tmp_path / "home", "--root", str(tmp_path), "serve", "stop", "outlives")
        assert stopped.finish()[0] == 0
    wait_for(lambda: not children_of_ours(str(tmp_path), (ENGINE_WORKER,)), 30, "the engine to stop")
