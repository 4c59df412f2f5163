"""serve start BASE.gguf --name base --lora NAME=ADAPTER.gguf ...: several adapters on one llama.cpp process, each its own model name.

Real llama.cpp (the embedded engine) with real GGUF LoRAs converted from peft adapters with random
non-zero weights, so each adapter's greedy answer differs from the base's and from the other's.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest
from cli_runner import cli_in_process
from mcp import Client

from model_serving.errors import InputError, VerificationFailed
from model_serving.mcp.server import create_server
from model_serving.requests import ServeStartRequest
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.settings import Settings
from model_serving.verbs import serve_start

QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]


def ask(base_url: str, model: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/chat/completions", timeout=120,
                      json={"model": model, "messages": QUESTION, "max_tokens": 12, "temperature": 0})


def answer(base_url: str, model: str) -> str:
    reply = ask(base_url, model)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def test_two_adapters_on_one_engine_each_answer_under_their_own_name(settings: Settings, tiny_gguf: Path,
                                                                     tiny_lora_ggufs: tuple[Path, Path]) -> None:
    a, b = tiny_lora_ggufs
    model = serve_start(settings, ServeStartRequest(gguf_path=str(tiny_gguf), name="base", ctx_size=512, parallel=2,
                                                    lora=[f"tuned-a={a}", f"tuned-b={b}"]))
    try:
        assert [(x.name, x.source, x.differs_from_base) for x in model.adapters] == [("tuned-a", str(a), True), ("tuned-b", str(b), True)]
        listed = httpx.get(f"{model.base_url}/v1/models", timeout=30).json()
        assert [m["id"] for m in listed["data"]] == ["base", "tuned-a", "tuned-b"]
        first = answer(model.base_url, "base")
        answers = {name: answer(model.base_url, name) for name in ("tuned-a", "tuned-b")}
        assert len({first, *answers.values()}) == 3, answers  # each adapter changes the answer its own way
        assert answer(model.base_url, "base") == first  # back to the base: no adapter left applied, no restart
        assert answer(model.base_url, "tuned-a") == answers["tuned-a"]
        unknown = ask(model.base_url, "tuned-c")
        assert unknown.status_code == 404 and "tuned-a" in unknown.json()["error"]["message"]  # not a silent base answer
        [record] = list_models(settings)
        assert record.pid == model.pid and [x.name for x in record.adapters] == ["tuned-a", "tuned-b"]
    finally:
        stop_model(settings, "base")


def test_cli_serve_start_with_repeated_lora_and_serve_list(settings: Settings, tiny_gguf: Path, tiny_lora_ggufs: tuple[Path, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    roots = [x for r in settings.roots for x in ("--root", str(r))]
    a, b = tiny_lora_ggufs
    code, out, err = cli_in_process(capsys, *roots, "--json", "serve", "start", str(tiny_gguf), "--name", "cli-base", "--ctx-size", "512",
                                    "--parallel", "1", "--lora", f"one={a}", "--lora", f"two={b}")
    assert code == 0, err
    try:
        started = json.loads(out)
        assert [x["name"] for x in started["adapters"]] == ["one", "two"]  # both kept: a repeated option does not replace the first
        assert answer(started["base_url"], "one") != answer(started["base_url"], "cli-base")
        code, out, err = cli_in_process(capsys, *roots, "serve", "list")
        assert code == 0 and "adapter one" in out and "adapter two" in out, out
    finally:
        stop_model(settings, "cli-base")


@pytest.mark.anyio
async def test_mcp_serve_start_with_lora_serves_each_adapter(settings: Settings, tiny_gguf: Path, tiny_lora_ggufs: tuple[Path, Path]) -> None:
    a, b = tiny_lora_ggufs
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("serve_start", {"gguf_path": str(tiny_gguf), "name": "mcp-base", "ctx_size": 512, "parallel": 1,
                                                        "lora": [f"alpha={a}", f"beta={b}"]})
        assert not result.is_error, result.content[0].text
        try:
            model = result.structured_content
            assert [x["name"] for x in model["adapters"]] == ["alpha", "beta"] and all(x["differs_from_base"] for x in model["adapters"])
            replies = await anyio.to_thread.run_sync(lambda: [answer(model["base_url"], n) for n in ("mcp-base", "alpha", "beta")])
            assert len(set(replies)) == 3
            status = (await client.call_tool("serving_status", {})).structured_content
            assert [x["name"] for x in status["engine"][0]["model"]["adapters"]] == ["alpha", "beta"]
        finally:
            await client.call_tool("serve_stop", {"name": "mcp-base"})


@pytest.mark.parametrize(("items", "words"), [
    (["tuned"], "is not NAME=PATH"),
    (["=x.gguf"], "is not NAME=PATH"),
    (["Bad Name={a}"], "not a valid model name"),
    (["base={a}"], "given twice"),
    (["one={a}", "one={b}"], "given twice"),
    (["one=/etc/passwd"], "outside the allowed roots"),
    (["one={base}"], "not a LoRA adapter GGUF"),
])
def test_bad_lora_items_are_refused_before_anything_starts(settings: Settings, tiny_gguf: Path, tiny_lora_ggufs: tuple[Path, Path],
                                                           items: list[str], words: str) -> None:
    a, b = tiny_lora_ggufs
    lora = [item.format(a=a, b=b, base=tiny_gguf) for item in items]
    with pytest.raises(InputError, match=words) as exc:
        serve_start(settings, ServeStartRequest(gguf_path=str(tiny_gguf), name="base", lora=lora))
    assert exc.value.next_step and list_models(settings) == []


def test_an_adapter_of_another_base_size_is_refused(settings: Settings, smollm2_gguf: Path, tiny_lora_ggufs: tuple[Path, Path]) -> None:
    with pytest.raises(InputError, match="does not fit the base") as exc:
        serve_start(settings, ServeStartRequest(gguf_path=str(smollm2_gguf), name="smol", lora=[f"tiny={tiny_lora_ggufs[0]}"]))
    assert "same model and size" in exc.value.next_step and list_models(settings) == []


def test_an_untrained_adapter_fails_its_probe_and_nothing_keeps_running(settings: Settings, tiny_gguf: Path, tiny_zero_lora_gguf: Path) -> None:
    with pytest.raises(VerificationFailed, match="answer exactly as the base") as exc:
        serve_start(settings, ServeStartRequest(gguf_path=str(tiny_gguf), name="base", ctx_size=512, parallel=1, lora=[f"zero={tiny_zero_lora_gguf}"]))
    assert "lora_B" in exc.value.next_step and list_models(settings) == []


def test_an_adapter_of_another_architecture_is_refused_on_the_engine(settings: Settings, tmp_path: Path, tiny_gguf: Path) -> None:
    from lora_fixtures import synthetic_gguf

    qwen_lora = synthetic_gguf(tmp_path / "qwen2-lora.gguf", "qwen2", adapter=True)
    with pytest.raises(InputError, match="adapter for qwen2, but the base is llama"):
        serve_start(settings, ServeStartRequest(gguf_path=str(tiny_gguf), name="base", lora=[f"q={qwen_lora}"]))
    assert list_models(settings) == []
