"""Streaming clients: OpenAI-compatible SSE and Ollama's native NDJSON.

Every network read is stamped with `perf_counter_ns` the moment it arrives, before any parsing, and
the stamp is given to each event decoded from it: parsing cost never leaks into TTFT (see the
reference's pitfall on stamping after JSON parsing). TTFT is the first event that carries generated
text (content, reasoning or a tool call); a chat stream's role-only opening delta does not count. A reasoning
model's thinking (`reasoning_content` or `reasoning` deltas, Ollama's `thinking`) is counted apart: the time to the
first *answer* token (content or a tool call) and the reasoning chunks, one token each.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from model_serving.bench.http_client import Connection, Pool, Response, StreamClosed
from model_serving.bench.prompts import PromptSpec
from model_serving.bench.schema import BenchConfig, ErrorKind, RequestRecord, RequestStatus
from model_serving.bench.server_timings import from_llamacpp, from_ollama


@dataclass
class Event:
    """One decoded server event: the generated text it carries plus any accounting fields."""

    text: str = ""
    has_token: bool = False
    reasoning_only: bool = False  # the event carries reasoning and nothing of the answer (content or a tool call)
    role_only: bool = False
    done: bool = False
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    ollama_final: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Framer:
    """Splits a byte stream into messages: SSE events (blank-line separated) or NDJSON lines."""

    sse: bool
    buffer: bytes = b""
    messages: list[bytes] = field(default_factory=list)

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        sep = b"\n\n" if self.sse else b"\n"
        if self.sse and b"\r\n" in self.buffer:
            self.buffer = self.buffer.replace(b"\r\n", b"\n")
        parts = self.buffer.split(sep)
        self.buffer = parts.pop()
        return [p for p in parts if p.strip()]

    def rest(self) -> list[bytes]:
        rest, self.buffer = self.buffer, b""
        return [rest] if rest.strip() else []


def request_for(config: BenchConfig, spec: PromptSpec) -> tuple[str, dict[str, Any]]:
    """URL path and JSON body of one streaming request for the configured API and route."""
    ignore_eos = bool(config.ignore_eos)  # BenchConfig sets it: on for the unique workloads
    max_tokens = spec.max_tokens or config.max_tokens
    if config.api == "ollama":
        options: dict[str, Any] = {"num_predict": max_tokens, "temperature": config.temperature, "seed": config.seed}
        if config.route == "chat":
            return "/api/chat", {"model": config.model, "messages": spec.messages(), "stream": True, "options": options}
        return "/api/generate", {"model": config.model, "prompt": spec.as_text(), "stream": True, "options": options}
    body: dict[str, Any] = {
        "model": config.model, "stream": True, "max_tokens": max_tokens, "temperature": config.temperature,
        "seed": config.seed, "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        body["ignore_eos"] = True  # honoured by llama.cpp's server and vLLM; others ignore unknown fields
    if config.route == "chat":
        return "/v1/chat/completions", {**body, "messages": spec.messages()}
    return "/v1/completions", {**body, "prompt": spec.as_text()}


def _error_text(obj: Any) -> str:
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(obj)


def parse_openai(message: bytes) -> Event | None:
    data_lines = [line[5:].strip() for line in message.split(b"\n") if line.startswith(b"data:")]
    if not data_lines:
        return None  # an SSE comment (": ping") or a bare event name
    payload = b"\n".join(data_lines)
    if payload == b"[DONE]":
        return Event(done=True)
    obj = json.loads(payload)
    if "error" in obj and not obj.get("choices"):
        return Event(error=_error_text(obj))
    event = Event(usage=obj.get("usage"), timings=obj.get("timings"))
    answered = False
    for choice in obj.get("choices") or []:
        delta = choice.get("delta")
        if delta is not None:  # chat
            piece = delta.get("content") or ""
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
            tools = delta.get("tool_calls")
            event.text += piece
            if piece or reasoning or tools:
                answered = answered or bool(piece or tools)
                event.has_token = True
            elif "role" in delta:
                event.role_only = True
        else:  # completions
            piece = choice.get("text") or ""
            event.text += piece
            event.has_token = event.has_token or bool(piece)
        if choice.get("finish_reason"):
            event.finish_reason = choice["finish_reason"]
            event.done = True  # some servers close after this without a [DONE] line
    event.reasoning_only = event.has_token and not answered and not event.text
    return event


def parse_ollama(message: bytes) -> Event:
    obj = json.loads(message)
    if "error" in obj:
        return Event(error=_error_text(obj))
    msg = obj.get("message") or {}
    piece = obj.get("response") or msg.get("content") or ""
    thinking = obj.get("thinking") or msg.get("thinking") or ""
    event = Event(text=piece, has_token=bool(piece or thinking or msg.get("tool_calls")),
                  reasoning_only=bool(thinking) and not (piece or msg.get("tool_calls")))
    if obj.get("done"):
        event.done = True
        event.finish_reason = obj.get("done_reason")
        event.ollama_final = obj
    return event


@dataclass
class _Stream:
    """One request's connection, response and progress, so that any exit releases the connection once."""

    pool: Pool
    record: RequestRecord
    t0_ns: int
    sse: bool
    conn: Connection | None = None
    response: Response | None = None
    finished: bool = False

    def ms(self, ns: int) -> float:
        return (ns - self.t0_ns) / 1e6

    def _stamp_send(self) -> None:
        self.record.sent_clock_ns = time.perf_counter_ns()
        self.record.sent_ms = self.ms(self.record.sent_clock_ns)

    async def exchange(self, url_path: str, body: dict[str, Any]) -> None:
        self.conn = await self.pool.acquire_or_none(self.record)
        if self.conn is None:
            self.record.status, self.record.error_kind = "error", "connect"
            return
        response = await self._post(url_path, body)
        self.record.first_byte_ms = self.ms(response.first_byte_ns)
        if response.status >= 400:
            await self._http_error(response)
        else:
            await self._read_events(response)

    async def _post(self, url_path: str, body: dict[str, Any]) -> Response:
        assert self.conn is not None
        self._stamp_send()
        # No resend on a kept-alive connection the server closed: users' clients lose that request, so the
        # bench counts it (error_kind "reset", summary.connection_errors) instead of hiding it.
        self.response = await self.conn.post_json(url_path, body)
        return self.response

    async def _http_error(self, response: Response) -> None:
        raw = b"".join([data async for _, data in response.body()])
        try:
            detail = _error_text(json.loads(raw))
        except ValueError:
            detail = raw.decode(errors="replace")[:300]
        _fail(self.record, "error", "http", f"HTTP {response.status}: {detail}")

    async def _read_events(self, response: Response) -> None:
        framer = Framer(sse=self.sse)
        parse = parse_openai if self.sse else parse_ollama
        async for stamp, data in response.body():  # stamped on receipt, before parsing
            for message in framer.feed(data):
                self.finished = _apply(parse(message), self.record, self.ms(stamp)) or self.finished
        for message in framer.rest():
            self.finished = _apply(parse(message), self.record, self.ms(time.perf_counter_ns())) or self.finished

    def release(self) -> None:
        if self.conn is not None:
            self.pool.release(self.conn, reusable=self.response is not None and self.response.complete)
            self.conn = None


def _fail(record: RequestRecord, status: RequestStatus, kind: ErrorKind, error: str) -> None:
    record.status, record.error_kind, record.error = status, kind, error


async def stream_one(pool: Pool, config: BenchConfig, spec: PromptSpec, record: RequestRecord, t0_ns: int) -> None:
    """Send one request and fill `record` with what arrived and when. Never raises for server faults.

    The whole exchange, connecting included, is bounded by `config.timeout_s`: a server that stalls
    anywhere leaves the request incomplete with error_kind "timeout" once the limit passes.
    """
    path, body = request_for(config, spec)
    stream = _Stream(pool, record, t0_ns, sse=config.api == "openai")
    try:
        async with asyncio.timeout(config.timeout_s):
            await stream.exchange(pool.prefix + path, body)
    except TimeoutError:
        _fail(record, "incomplete", "timeout", f"no complete answer within the {config.timeout_s:g} s request limit")
    except (OSError, StreamClosed) as exc:
        _fail(record, "error" if record.first_byte_ms is None else "incomplete", "reset",
              f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    except ValueError as exc:  # a message that is not JSON
        _fail(record, "error", "malformed", f"malformed stream message: {exc}")
    finally:
        stream.release()
    record.end_ms = stream.ms(time.perf_counter_ns())
    if record.status != "ok":
        return
    if record.error:
        record.status, record.error_kind = "error", "stream_error"
    elif not stream.finished:
        _fail(record, "incomplete", "truncated", "the server closed the stream before its final message")
    elif record.first_token_ms is None:
        _fail(record, "empty", "empty", "the server finished without generating any text")


def _apply(event: Event | None, record: RequestRecord, at_ms: float) -> bool:
    """Fold one event into the record; return True when it is the stream's final message."""
    if event is None:
        return False
    if event.error:
        record.error = event.error
        return True
    if event.role_only and record.first_token_ms is None:
        record.role_chunk_before_content = True
    if event.has_token:
        if record.first_token_ms is None:
            record.first_token_ms = at_ms
        record.last_token_ms = at_ms
        record.chunk_ms.append(at_ms)
        record.text += event.text
        if event.reasoning_only:
            record.reasoning_chunks += 1
        elif record.first_answer_ms is None:
            record.first_answer_ms = at_ms
    if event.finish_reason:
        record.finish_reason = event.finish_reason
    if event.usage:
        if event.usage.get("completion_tokens") is not None:
            record.output_tokens = int(event.usage["completion_tokens"])
            record.output_tokens_source = "server"
        if event.usage.get("prompt_tokens"):
            record.prompt_tokens = int(event.usage["prompt_tokens"])
            record.prompt_tokens_source = "server"
    if event.timings:
        record.server = from_llamacpp(event.timings)
    if event.ollama_final:
        record.server = from_ollama(event.ollama_final)
        if record.server.output_tokens is not None:
            record.output_tokens, record.output_tokens_source = record.server.output_tokens, "server"
        if record.server.prompt_tokens:
            record.prompt_tokens, record.prompt_tokens_source = record.server.prompt_tokens, "server"
    return event.done
