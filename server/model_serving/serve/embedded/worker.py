"""One served model: llama.cpp's own server (via the xllamacpp wheel) in a process of its own.

Started and supervised by `model_serving.serve.embedded.engine`; it prints one READY line with its address, then
serves until SIGTERM. Running each model in its own process keeps a crash or an OOM contained and
lets `serve stop` free the memory for certain.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from model_serving.util.process import die_with_parent, outlive_parent


def main(argv: list[str] | None = None) -> None:
    die_with_parent()  # a start-up cut short (kill -9 of the CLI) must not leave an engine loading on
    parser = argparse.ArgumentParser(prog="model-serving-engine-worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx-size", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)

    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]  # never reachable from another machine
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cont_batching = True
    params.endpoint_metrics = True
    params.endpoint_slots = True
    params.use_jinja = True  # the GGUF's own chat template, rendered as the model's authors wrote it
    if args.threads > 0:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    server = xlc.Server(params)
    outlive_parent()  # serving now: the registry owns us, and `serve stop` ends us
    print(f"READY {server.listening_address}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server
    sys.exit(0)


if __name__ == "__main__":
    main()
