"""A loopback LLM server with a known timing script: first token after X ms, then one every Y ms.

It speaks the same streaming dialects the benchmark reads (OpenAI SSE with a role-only opening
chunk and llama.cpp-style `timings`, Ollama NDJSON with `*_duration` fields), so the client's
measurements can be checked against the truth, and with X = Y = 0 it measures the client's own
overhead. Misbehaviours for the bad-input tests: close the stream early, answer with no text,
stall mid-stream (`mode="stall"`), or never answer chosen paths at all (`stall_paths`).
Run it in its own process (`python tests/support/scripted_server.py`) so its timing does
not share an interpreter with the client being measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Mode = str  # "normal" | "close_early" | "empty" | "stall"
MODES = ("normal", "close_early", "empty", "stall")


@dataclass
class Script:
    ttft_ms: float = 50.0
    tpot_ms: float = 10.0
    tokens: int = 16
    model: str = "scripted"
    mode: Mode = "normal"
    slots: int = 4
    close_after: int = 3  # tokens sent before a close_early stream is cut or a stalled one stops
    die_after: int = 0  # exit the whole process after this many answered requests (0: never)
    stall_paths: str = ""  # comma-separated paths (GET or POST) that read the request and never answer
    # Every fail_every-th generation request fails, taking the next of fail_modes in turn: "drop" (close before any
    # response), "500" (HTTP 500), "truncate" (a few tokens, then a body that ends without the final message),
    # "reset_after_final" (the whole answer and [DONE], then a reset before the body's terminating chunk).
    fail_every: int = 0
    fail_modes: str = "drop,500,truncate"
    reasoning: int = 0  # the first this many tokens of a chat are reasoning (reasoning_content; Ollama's thinking)


def _stall_forever() -> None:
    """Hold the connection open with nothing sent: the client's own limit must end the exchange."""
    threading.Event().wait()


_answered = [0]
_generations = [0]
_log: list[dict[str, Any]] = []


def _prompt_key(request: dict[str, Any]) -> str:
    """The opening of the prompt: the benchmark's synthetic prompts start with a unique random prefix."""
    text = request.get("prompt") or next((m.get("content", "") for m in request.get("messages") or []), "")
    return str(text)[:16]
_lock = threading.Lock()


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: Script = Script()

    def setup(self) -> None:
        super().setup()
        # Small writes must leave at once: Nagle plus the peer's delayed ACK would add up to 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep the test output quiet
        pass

    def _json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stalls(self) -> bool:
        return self.path in [p for p in self.script.stall_paths.split(",") if p]

    def do_GET(self) -> None:  # noqa: N802
        s = self.script
        if self._stalls():
            _stall_forever()
        if self.path == "/script/log":  # read and clear
            with _lock:
                report, _log[:] = list(_log), []
            self._json(200, report)
            return
        routes = {
            "/v1/models": {"object": "list", "data": [{"id": s.model, "object": "model"}]},
            "/props": {"total_slots": s.slots, "default_generation_settings": {"n_ctx": 2048}, "build_info": "scripted"},
            "/health": {"status": "ok"},
            "/api/version": {"version": "0.0-scripted"},
            "/api/tags": {"models": [{"name": f"{s.model}:latest", "model": f"{s.model}:latest", "size": 123_000_000}]},
            "/api/ps": {"models": [{"name": f"{s.model}:latest", "model": f"{s.model}:latest", "size": 123_000_000, "size_vram": 0}]},
        }
        if self.path in routes:
            self._json(200, routes[self.path])
        else:
            self._json(404, {"error": "not found"})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if self._stalls():
            _stall_forever()
        if self.path == "/api/show":  # SmolLM2-135M's shape, so the roofline has real numbers to work with
            self._json(200, {"model_info": {"general.architecture": "llama", "llama.block_count": 30, "llama.embedding_length": 576,
                                            "llama.attention.head_count": 9, "llama.attention.head_count_kv": 3}})
            return
        start = time.perf_counter()  # the script is timed from a fully received request
        s = self.script
        name = request.get("model", "")
        if name not in (s.model, f"{s.model}:latest"):
            self._json(404, {"error": {"message": f"model '{name}' not found", "type": "not_found"}})
            return
        failure = self._failure()
        if failure in ("drop", "500"):
            return self._fail_now(failure)
        ollama = self.path.startswith("/api/")
        chat = self.path in ("/v1/chat/completions", "/api/chat")
        limit = (request.get("options") or {}).get("num_predict") if ollama else request.get("max_tokens")
        n = 0 if s.mode == "empty" else min(s.tokens, int(limit or s.tokens))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson" if ollama else "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not ollama and chat:
            self._chunk(b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}\n\n')
        # Every message is built before the clock starts to matter, so a wake-up only writes bytes.
        messages = [_token_message(name, i, ollama=ollama, chat=chat, reasoning=chat and i < self.script.reasoning) for i in range(n)]
        if failure == "truncate":
            messages = messages[: max(1, n // 2)]
        if not self._write_tokens(messages, start, request):
            return
        _sleep_until(start + (s.ttft_ms + max(n - 1, 0) * s.tpot_ms) / 1000.0)
        for message in _final_messages(s, name, n, ollama=ollama, chat=chat) if failure != "truncate" else []:
            self._chunk(message)
        if failure == "reset_after_final":
            self.close_connection = True
            self.connection.shutdown(2)  # the whole answer went out, the body's end did not
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        with _lock:
            _answered[0] += 1
            if s.die_after and _answered[0] >= s.die_after:
                os._exit(0)  # a server that goes away mid-run

    def _failure(self) -> str | None:
        """The failure this generation request gets, if it is one of every fail_every."""
        s = self.script
        if not s.fail_every:
            return None
        with _lock:
            _generations[0] += 1
            k = _generations[0]
        if k % s.fail_every:
            return None
        modes = [m for m in s.fail_modes.split(",") if m]
        return modes[(k // s.fail_every - 1) % len(modes)]

    def _fail_now(self, failure: str) -> None:
        if failure == "500":
            body = json.dumps({"error": {"message": "scripted overload", "type": "server_error"}}).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")  # said, so that a client never reuses it: only this request fails
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.close_connection = True
        self.connection.shutdown(2)  # dropped: no status line at all

    def _write_tokens(self, messages: list[bytes], start: float, request: dict[str, Any]) -> bool:
        """Write each token on the script's clock; False when the mode cut the stream short."""
        s, written = self.script, []
        for i, message in enumerate(messages):
            due = start + (s.ttft_ms + i * s.tpot_ms) / 1000.0
            _sleep_until(due)
            if s.mode == "close_early" and i == s.close_after:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)  # cut mid-stream, with no terminating chunk
                return False
            if s.mode == "stall" and i == s.close_after:
                _stall_forever()
            self._chunk(message)
            written.append(time.perf_counter_ns())
        if written:
            with _lock:  # what really happened, on the host's monotonic clock, for the accuracy tests
                _log.append({"key": _prompt_key(request), "received_ns": int(start * 1e9), "first_write_ns": written[0], "last_write_ns": written[-1]})
        return True


def _token_message(name: str, i: int, *, ollama: bool, chat: bool, reasoning: bool = False) -> bytes:
    piece = f"t{i} "
    if ollama:
        message = {"role": "assistant", "content": "", "thinking": piece} if reasoning else {"role": "assistant", "content": piece}
        body = {"model": name, "done": False, **({"message": message} if chat else {"response": piece})}
        return json.dumps(body).encode() + b"\n"
    choice = {"index": 0, "delta": {"reasoning_content" if reasoning else "content": piece}} if chat else {"index": 0, "text": piece}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


def _final_messages(s: Script, name: str, n: int, *, ollama: bool, chat: bool) -> list[bytes]:
    decode_ms = max(n - 1, 0) * s.tpot_ms
    if ollama:
        final = {"model": name, "done": True, "done_reason": "length" if n else "stop",
                 **({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}),
                 "total_duration": int((s.ttft_ms + decode_ms) * 1e6), "load_duration": 0,
                 "prompt_eval_count": 12, "prompt_eval_duration": int(s.ttft_ms * 1e6),
                 "eval_count": n, "eval_duration": int(decode_ms * 1e6)}
        return [json.dumps(final).encode() + b"\n"]
    finish = {"choices": [{"index": 0, "finish_reason": "length", **({"delta": {}} if chat else {"text": ""})}],
              "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n},
              "timings": {"prompt_n": 12, "prompt_ms": s.ttft_ms, "predicted_n": n, "predicted_ms": decode_ms, "cache_n": 0}}
    return [b"data: " + json.dumps(finish).encode() + b"\n\n", b"data: [DONE]\n\n"]


def serve(script: Script, port: int = 0) -> ThreadingHTTPServer:
    handler = type("ScriptedHandler", (Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    threading.Thread(target=server.serve_forever, daemon=True, name="scripted-server").start()
    return server


@contextlib.contextmanager
def spawned(**script: Any) -> Iterator[str]:
    """Run the server in a child process for the duration of the block; yield its base URL."""
    argv = [sys.executable, str(Path(__file__).resolve())]
    for key, value in script.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the scripted server did not start (exit code {proc.poll()})")
        yield url
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--tpot-ms", type=float, default=10.0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--model", default="scripted")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--close-after", type=int, default=3)
    parser.add_argument("--stall-paths", default="", help="comma-separated paths that never answer")
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--fail-modes", default="drop,500,truncate")
    parser.add_argument("--reasoning", type=int, default=0)
    args = parser.parse_args(argv)
    script = Script(args.ttft_ms, args.tpot_ms, args.tokens, args.model, args.mode, args.slots, close_after=args.close_after,
                    die_after=args.die_after, stall_paths=args.stall_paths, fail_every=args.fail_every, fail_modes=args.fail_modes, reasoning=args.reasoning)
    server = serve(script, args.port)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)  # the parent reads this line
    try:
        sys.stdin.read()  # serve until the parent closes our stdin
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
