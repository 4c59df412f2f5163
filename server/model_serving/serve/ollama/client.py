"""A typed client for Ollama's REST API (the endpoints model-serving uses), over httpx.

Failures become two exception types the rest of the code can act on: `OllamaUnreachable`
(nothing answers at the host) and `OllamaAPIError` (the server answered with an error, with its
HTTP status; `ModelNotFound` for 404). Both are ServingErrors with a cause and a next step.
Streaming endpoints are read line by line (NDJSON); an `{"error": ...}` line ends the stream with
an OllamaAPIError even though the HTTP status was 200.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from model_serving.errors import InputError, ServingError, VerificationFailed
from model_serving.jobs import Progress
from model_serving.settings import Settings, is_loopback_url

_CHUNK = 1 << 20
READ_TIMEOUT_S = 600.0  # creating or loading a large model answers late
CONNECT_TIMEOUT_S = 5.0
QUICK_TIMEOUT_S = 30.0  # a blob HEAD is answered from the server's disk
START_HINT = "Start it with `ollama serve` (or `systemctl start ollama`), or point OLLAMA_HOST / --ollama-host at a running server."


class OllamaUnreachable(ServingError):
    """Nothing answered at the configured Ollama host."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"Ollama is not reachable at {host} ({reason}).", START_HINT + " `model-serving deploy` can use the embedded engine instead.")
        self.host = host


class OllamaAPIError(ServingError):
    """Ollama answered with an error (HTTP status, or an error line inside a stream)."""

    def __init__(self, status: int, message: str, *, during: str, next_step: str = "", mid_stream: bool = False) -> None:
        where = " (in the middle of its response stream)" if mid_stream else ""
        super().__init__(f"Ollama refused {during}: {message}{where}.", next_step or _next_step_for(status, message))
        self.status = status
        self.message = message
        self.mid_stream = mid_stream


class ModelNotFound(OllamaAPIError, InputError):
    """The named model does not exist on the server."""


def _next_step_for(status: int, message: str) -> str:
    if status == 503:
        return "The server's request queue is full; wait for running requests to finish and retry (or raise OLLAMA_MAX_QUEUE)."
    if status == 404:
        return "List the models with `model-serving ollama list`; register or pull it first."
    if status == 403:
        return "Ollama refuses requests whose Host header is not local; reach it through localhost or set OLLAMA_ORIGINS."
    if "digest mismatch" in message:
        return "The file changed or was corrupted in transit; run the command again to hash and upload it afresh."
    if status >= 500:
        return "See the Ollama server log (journalctl -u ollama, or the terminal running `ollama serve`)."
    return "Check the request values named in the message."


class ModelDetails(BaseModel):
    parent_model: str = ""
    format: str = ""
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""
    context_length: int | None = None


class ModelEntry(BaseModel):
    """One model from /api/tags."""

    name: str
    model: str = ""
    modified_at: str = ""
    size: int = 0
    digest: str = ""
    details: ModelDetails = Field(default_factory=ModelDetails)
    capabilities: list[str] | None = None


class RunningModel(BaseModel):
    """One loaded model from /api/ps, with where its memory sits."""

    name: str
    model: str = ""
    size: int = 0
    size_vram: int = 0
    digest: str = ""
    details: ModelDetails = Field(default_factory=ModelDetails)
    expires_at: str = ""
    context_length: int | None = None

    @property
    def gpu_fraction(self) -> float:
        return self.size_vram / self.size if self.size else 0.0

    @property
    def processor(self) -> str:
        """As `ollama ps` shows it: 100% GPU, 100% CPU, or a CPU/GPU split."""
        gpu = round(self.gpu_fraction * 100)
        if gpu >= 100:
            return "100% GPU"
        if gpu <= 0:
            return "100% CPU"
        return f"{100 - gpu}%/{gpu}% CPU/GPU"


class ShowInfo(BaseModel):
    """What /api/show says Ollama stored for a model."""

    name: str
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    system: str = ""
    license: str = ""
    details: ModelDetails = Field(default_factory=ModelDetails)
    model_info: dict[str, Any] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list)
    modified_at: str = ""

    def parameter_values(self) -> dict[str, list[str]]:
        """The `parameters` text (`name value` per line) as name -> values; quoted values unquoted."""
        values: dict[str, list[str]] = {}
        for line in self.parameters.splitlines():
            if not line.strip():
                continue
            name, _, raw = line.strip().partition(" ")
            raw = raw.strip()
            if raw.startswith('"'):
                try:
                    raw = json.loads(raw)
                except json.JSONDecodeError:
                    raw = raw.strip('"')
            values.setdefault(name, []).append(raw)
        return values


class ChatResult(BaseModel):
    """The final object of a chat or generate call, with the text gathered from the stream."""

    model: str
    content: str = ""
    done_reason: str = ""
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    thinking: str = Field("", description="the reasoning Ollama split from the answer (a `think` request)")
    prompt_eval_count: int = 0
    eval_count: int = 0
    total_duration: int = Field(0, description="nanoseconds")
    load_duration: int = Field(0, description="nanoseconds")
    prompt_eval_duration: int = Field(0, description="nanoseconds")
    eval_duration: int = Field(0, description="nanoseconds")


class OllamaClient:
    """Talks to the Ollama server at `host` (default: settings.ollama_host)."""

    def __init__(self, settings: Settings, host: str | None = None, *, timeout: float = READ_TIMEOUT_S, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.host = (host or settings.ollama_host).rstrip("/")
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        headers = {}
        # The key is for ollama.com-style remotes; it never goes to a loopback server or into logs.
        if settings.ollama_api_key is not None and not is_loopback_url(self.host):
            headers["Authorization"] = f"Bearer {settings.ollama_api_key.get_secret_value()}"
        self._http = httpx.Client(base_url=self.host, headers=headers, timeout=self._timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transport(self, during: str, next_step: str) -> Iterator[None]:
        """httpx's connection failures as our errors: unreachable, too late, or broken mid-way."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise OllamaUnreachable(self.host, _reason(exc)) from None
        except httpx.TimeoutException:
            raise _late(self.host, during) from None
        except httpx.TransportError as exc:
            raise ServingError(f"The connection to Ollama at {self.host} broke during {during} ({_reason(exc)}).", next_step) from None

    def _request(self, method: str, path: str, *, during: str, body: Any = None) -> httpx.Response:
        with self._transport(during, "Retry; if it keeps happening, check the server log."):
            response = self._http.request(method, path, json=body)
        if response.status_code >= 400:
            raise _api_error(response.status_code, _error_text(response), during)
        return response

    def _stream(self, path: str, body: dict[str, Any], *, during: str, on_line: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """POST a streaming request; hand each line to `on_line`; return the last object."""
        last: dict[str, Any] = {}
        with self._transport(during, "Retry; nothing was committed unless the stream reached 'success'."):
            with self._http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response.status_code, _error_text(response), during)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError:
                        raise OllamaAPIError(response.status_code, f"unreadable stream line {line[:200]!r}", during=during) from None
                    if "error" in obj:
                        raise _api_error(response.status_code if response.status_code >= 400 else 500, str(obj["error"]), during, mid_stream=True)
                    if on_line:
                        on_line(obj)
                    last = obj
        return last

    # --- server ---------------------------------------------------------------------------

    def version(self) -> str:
        return str(self._request("GET", "/api/version", during="the version request").json().get("version", ""))

    def is_up(self, timeout: float = 2.0) -> bool:
        """A cheap liveness check that never raises."""
        try:
            return self._http.get("/api/version", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    # --- models ---------------------------------------------------------------------------

    def list(self) -> list[ModelEntry]:  # below, `list` in this class body names this method: signatures say builtins.list
        data = self._request("GET", "/api/tags", during="listing models").json()
        return [ModelEntry.model_validate(m) for m in data.get("models") or []]

    def ps(self) -> builtins.list[RunningModel]:
        data = self._request("GET", "/api/ps", during="listing running models").json()
        return [RunningModel.model_validate(m) for m in data.get("models") or []]

    def show(self, name: str, *, verbose: bool = False) -> ShowInfo:
        data = self._request("POST", "/api/show", body={"model": name, "verbose": verbose}, during=f"showing {name}").json()
        return ShowInfo.model_validate({"name": name, **{k: v for k, v in data.items() if v is not None}})

    def exists(self, name: str) -> bool:
        try:
            self.show(name)
        except ModelNotFound:
            return False
        return True

    def copy(self, source: str, destination: str) -> None:
        self._request("POST", "/api/copy", body={"source": source, "destination": destination}, during=f"copying {source} to {destination}")

    def delete(self, name: str) -> None:
        self._request("DELETE", "/api/delete", body={"model": name}, during=f"deleting {name}")

    def unload(self, name: str) -> ChatResult:
        """keep_alive 0 with an empty prompt: Ollama unloads the model at once."""
        data = self._request("POST", "/api/generate", body={"model": name, "prompt": "", "keep_alive": 0, "stream": False}, during=f"unloading {name}").json()
        return ChatResult.model_validate({"model": name, **data})

    def pull(self, name: str, on_status: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        return self._stream("/api/pull", {"model": name, "stream": True}, during=f"pulling {name}", on_line=on_status)

    def create(self, body: dict[str, Any], on_status: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        final = self._stream("/api/create", {**body, "stream": True}, during=f"creating {body.get('model')}", on_line=on_status)
        if final.get("status") != "success":
            raise OllamaAPIError(200, f"the create stream ended with {final.get('status')!r} instead of 'success'", during=f"creating {body.get('model')}")
        return final

    # --- inference ------------------------------------------------------------------------

    def chat(self, name: str, messages: builtins.list[dict[str, Any]], *, options: dict[str, Any] | None = None, tools: builtins.list[dict[str, Any]] | None = None, keep_alive: str | int | None = None,
             think: bool | None = None) -> ChatResult:
        body: dict[str, Any] = {"model": name, "messages": messages, "stream": True}
        if options:
            body["options"] = options
        if think is not None:
            body["think"] = think
        if tools:
            body["tools"] = tools
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        parts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []

        def gather(obj: dict[str, Any]) -> None:
            message = obj.get("message") or {}
            parts.append(message.get("content") or "")
            thoughts.append(message.get("thinking") or "")
            calls.extend(message.get("tool_calls") or [])

        final = self._stream("/api/chat", body, during=f"chatting with {name}", on_line=gather)
        return ChatResult.model_validate({**{k: v for k, v in final.items() if k != "message"}, "model": name, "content": "".join(parts),
                                          "thinking": "".join(thoughts), "tool_calls": calls})

    # --- blobs ----------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        try:
            response = self._http.head(f"/api/blobs/{digest}", timeout=min(QUICK_TIMEOUT_S, self._timeout.read or QUICK_TIMEOUT_S))
        except httpx.ConnectError as exc:
            raise OllamaUnreachable(self.host, _reason(exc)) from None
        except httpx.TimeoutException:
            raise _late(self.host, "the blob check") from None
        except httpx.TransportError as exc:
            raise ServingError(f"The connection to Ollama at {self.host} broke while checking a blob ({_reason(exc)}).", "Retry.") from None
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise _api_error(response.status_code, _error_text(response), f"the blob check for {digest}")

    def push_blob(self, path: Path, digest: str, progress: Progress | None = None, *, attempts: int = 3, retry_delay: float = 0.5) -> bool:
        """Upload `path` as blob `digest` unless the server has it; return True if bytes were sent.

        A broken connection is retried from the start (Ollama keeps no partial blobs); the server
        verifies the digest, so a blob is either whole and correct or absent.
        """
        progress = progress or Progress()
        if self.has_blob(digest):
            progress.update(1.0, "blob already on the server")
            return False
        size = path.stat().st_size
        last_reason = ""
        for attempt in range(1, attempts + 1):
            progress.check()
            try:
                response = self._http.post(
                    f"/api/blobs/{digest}", content=_file_chunks(path, size, progress),
                    headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
                )
            except httpx.ConnectError as exc:
                if attempt == 1:
                    raise OllamaUnreachable(self.host, _reason(exc)) from None
                last_reason = _reason(exc)
            except httpx.TransportError as exc:
                last_reason = _reason(exc)
            else:
                if response.status_code in (200, 201):
                    progress.update(1.0, "blob uploaded")
                    return True
                message = _error_text(response)
                if response.status_code == 400 and "digest mismatch" in message:
                    raise VerificationFailed(
                        f"Ollama rejected the upload of {path.name}: {message}.",
                        "The file changed after it was hashed, or was corrupted in transit; run the command again.",
                    )
                raise _api_error(response.status_code, message, f"the upload of {path.name}")
            if attempt < attempts:
                progress.update(None, f"upload interrupted ({last_reason}); retrying ({attempt + 1}/{attempts})")
                time.sleep(retry_delay * attempt)
        raise ServingError(
            f"The upload of {path.name} to Ollama at {self.host} broke off {attempts} times (last: {last_reason}); nothing was registered.",
            "Check the network and the server's free disk space, then run the command again; a blob that made it is reused.",
        )


def _file_chunks(path: Path, size: int, progress: Progress) -> Iterator[bytes]:
    sent = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            progress.check()
            sent += len(chunk)
            progress.update(sent / size if size else 1.0, f"uploading {sent >> 20}/{size >> 20} MiB")
            yield chunk


def _late(host: str, during: str) -> ServingError:
    return ServingError(f"Ollama at {host} did not answer {during} in time.", "Check the server load and log, then retry.")


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:300] or f"HTTP {response.status_code}"
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return response.text.strip()[:300]


def _api_error(status: int, message: str, during: str, *, mid_stream: bool = False) -> OllamaAPIError:
    cls = ModelNotFound if status == 404 and "not found" in message else OllamaAPIError
    return cls(status, message, during=during, mid_stream=mid_stream)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_time(value: str) -> datetime | None:
    """Ollama's RFC 3339 timestamps carry nanoseconds, which datetime.fromisoformat may refuse."""
    if not value:
        return None
    head, dot, tail = value.partition(".")
    if dot:
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits):]
        value = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
