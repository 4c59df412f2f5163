"""The router process: vllm-router in front of a model's replicas, supervised like an engine worker.

vllm-router's `start()` holds the GIL until it exits, so no thread of its process can notice that
it is listening and disarm the parent-death signal. This small process does that instead: it arms
parent death, starts the router as its child (which dies with it), disarms once the port accepts
connections, then forwards SIGTERM and ends with the router. Its argv carries this module's name,
which is how the registry tells our router from a recycled pid.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from model_serving.util import child as protocol
from model_serving.util.launch import die_with_parent, outlive_parent, set_parent_death

READY_TIMEOUT_S = 60.0


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def main(argv: list[str]) -> None:
    die_with_parent()  # a start-up cut short must not leave a router behind
    if len(argv) < 2 or argv[0] != "--port":
        sys.exit("usage: worker.py --port PORT ROUTER-ARGS...")
    port = int(argv[1])
    cmd = [sys.executable, "-m", "vllm_router.launch_router", "--host", "127.0.0.1", "--port", str(port), *argv[2:]]
    router = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=set_parent_death)  # noqa: PLW1509 (single-threaded here)
    signal.signal(signal.SIGTERM, lambda *_: router.terminate())
    signal.signal(signal.SIGINT, lambda *_: router.terminate())
    deadline = time.monotonic() + READY_TIMEOUT_S
    while router.poll() is None and not _listening(port):
        if time.monotonic() > deadline:
            router.kill()
            protocol.emit("error", cause=f"vllm-router did not listen within {READY_TIMEOUT_S:.0f} s.", next_step="Read the router's log above.")
            sys.exit(1)
        time.sleep(0.1)
    if router.poll() is None:
        outlive_parent()  # serving now: the registry owns us, and `serve stop` ends us
        protocol.emit("ready", url=f"http://127.0.0.1:{port}")
    sys.exit(router.wait())


if __name__ == "__main__":
    main(sys.argv[1:])
