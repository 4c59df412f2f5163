"""The gateway process: llama.cpp's router as our child on a loopback port, and the front (front.py) on the public one.

Started by `llama_router.start_gateway` with the router's argv after `--`. It runs the router armed with the
parent-death signal (util/process.native_argv), waits until it answers /health, then serves the front on
`--port` until SIGTERM; it ends the router (which stops its instances) on the way out, and ends itself when
the router dies. One pid is the gateway, as before: stopping it stops everything behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx

from model_serving.serve.gateway.front import serve
from model_serving.util.process import die_with_parent, native_argv, outlive_parent, spawn

ROUTER_STOP_S = 12.0  # the preset's stop-timeout (10 s) for its instances, and a little


def main(argv: list[str] | None = None) -> None:
    die_with_parent()  # a start cut short (kill -9 of the CLI) must not leave a router behind
    parser = argparse.ArgumentParser(prog="model-serving-gateway")
    parser.add_argument("--port", type=int, required=True, help="the public port: the front")
    parser.add_argument("--engine-port", type=int, required=True, help="llama.cpp's router, on 127.0.0.1 behind the front")
    parser.add_argument("--routes", type=Path, required=True, help="the route table file (routes.py)")
    parser.add_argument("router", nargs=argparse.REMAINDER, help="-- then the router's argv")
    args = parser.parse_args(argv)
    router = args.router[1:] if args.router[:1] == ["--"] else args.router
    sys.exit(run(args.port, args.engine_port, args.routes, router))


def run(port: int, engine_port: int, routes: Path, router: list[str]) -> int:
    armed = native_argv(router[0], *router[1:]) if router else None
    if armed is None:
        print("gateway: util-linux's setpriv is missing (or no router argv): the router could not be tied to the gateway; "
              "install util-linux, then start the gateway again", file=sys.stderr, flush=True)
        return 2
    child = spawn(armed, stdout=sys.stdout, text=False)  # our stdout is the gateway's log: the router writes into it too
    try:
        if not _router_up(child, engine_port):
            return 1  # it exited while starting: the log above says why

        def ready() -> None:
            outlive_parent()  # serving now: the gateway record owns us, and `serve gateway stop` ends us

        asyncio.run(serve(port, f"http://127.0.0.1:{engine_port}", routes, ready, child=child))
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=ROUTER_STOP_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 0 if child.returncode in (0, -15) else 1


def _router_up(child: subprocess.Popen, port: int) -> bool:
    """Wait until the router answers /health (the start's own timeout bounds this), or it exits."""
    while child.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.1)
    return False


if __name__ == "__main__":
    main()
