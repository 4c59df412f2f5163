"""A model served with LoRA adapters: the model-name front (front.py) before the natively built llama-server.

Started and supervised by `model_serving.serve.embedded.engine`. It runs llama-server as its own child on `--engine-port`
(armed with the parent-death signal, util/process.native_argv, ended on our SIGTERM, and watched, so the worker exits
when it dies), serves the front on `--port`, and says `ready` (util/child.py) once both answer. One pid per served
model stays true.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from model_serving.serve.embedded import native
from model_serving.serve.embedded.front import serve
from model_serving.util import child as protocol
from model_serving.util.process import die_with_parent, native_argv, outlive_parent, spawn


def main(argv: list[str] | None = None) -> None:
    die_with_parent()  # a start-up cut short (kill -9 of the CLI) must not leave an engine loading on
    parser = argparse.ArgumentParser(prog="model-serving-engine-worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx-size", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--lora", action="append", default=[], metavar="NAME=PATH", help="a LoRA adapter GGUF served under NAME")
    parser.add_argument("--engine-port", type=int, required=True, help="llama.cpp's own port, behind the front on --port")
    parser.add_argument("--native", required=True, metavar="LLAMA_SERVER", help="the llama-server to run as our child")
    parser.add_argument("--chat-template-file", default=None, help="a Jinja chat template replacing the GGUF's")
    args = parser.parse_args(argv)
    sys.exit(_serve_native(args))


def _serve_front(port: int, engine_port: int, base: str, adapters: list[str], child: Any = None) -> None:
    """The model-name front on `port` until SIGTERM (or until `child`, the llama.cpp server, exits); llama.cpp stays on `engine_port`."""
    def ready() -> None:
        outlive_parent()  # serving now: the registry owns us, and `serve stop` ends us
        protocol.emit("ready", url=f"http://127.0.0.1:{port}", engine_url=f"http://127.0.0.1:{engine_port}")

    asyncio.run(serve(port, f"http://127.0.0.1:{engine_port}", base, adapters, ready, child=child))


def _serve_native(args: argparse.Namespace) -> int:
    """The native llama-server with every adapter at scale 0, as our child, behind the front; its exit code is ours."""
    build = native.Build("native", Path(args.native), "native")
    argv = [*native.server_argv(build, Path(args.model), alias=args.alias, port=args.engine_port, ctx_size=args.ctx_size,
                                parallel=args.parallel, threads=args.threads or 1,
                                chat_template=Path(args.chat_template_file) if args.chat_template_file else None),
            *(a for spec in args.lora for a in _at_rest(spec.split("=", 1)[1]))]
    armed = native_argv(argv[0], *argv[1:])  # it dies with us, even on SIGKILL
    if armed is None:
        protocol.emit("error", cause="util-linux's setpriv is missing: the native llama-server could not be tied to this worker.",
                      next_step="Install util-linux (it provides setpriv), then start the model again.")
        return 2
    # Our stdout is the model's log: llama.cpp writes into it too. The environment is ours (engine.py set OMP_WAIT_POLICY).
    child = spawn(armed, stdout=sys.stdout, text=False)
    try:
        if not _loaded(child, args.engine_port):
            return 1  # it exited while loading: the log above says why, and the engine's start reports our exit
        _serve_front(args.port, args.engine_port, args.alias, [spec.split("=", 1)[0] for spec in args.lora], child=child)
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a hung llama.cpp: killed, never left behind
                child.kill()
                child.wait()
    return 0 if child.returncode in (0, -15) else 1


def _at_rest(path: str) -> tuple[str, str]:
    """One adapter at scale 0 until a request names it: `--lora` (and `--lora-init-without-apply`) would hold it at 1 for
    every request that names none. `--lora-scaled` splits FNAME:SCALE on ':'; a path with one loads at 1, and the
    front's explicit scales (front.rewrite) keep the base's requests clean."""
    return ("--lora", path) if ":" in path else ("--lora-scaled", f"{path}:0")


def _loaded(child: subprocess.Popen, port: int) -> bool:
    """Wait until llama.cpp answers /health on `port` (the start's own timeout in engine.py bounds this), or it exits."""
    while child.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)
    return False


if __name__ == "__main__":
    main()
