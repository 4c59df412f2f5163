"""The engine table: one class per name, each with the Engine protocol's methods; a directory where a GGUF belongs is refused."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest
from cli_runner import cli_in_process
from mcp import Client

from model_serving.errors import InputError
from model_serving.mcp.server import create_server
from model_serving.serve import engines
from model_serving.serve.engine_names import EngineName
from model_serving.serve.engine_protocol import Engine, StartOptions
from model_serving.serve.registry import list_models
from model_serving.settings import Settings

PROTOCOL = [n for n, _ in inspect.getmembers(Engine, inspect.isfunction) if not n.startswith("_")]


def test_every_engine_name_has_one_class_with_every_protocol_method() -> None:
    assert set(engines.ENGINES) == set(typing.get_args(EngineName))
    assert set(PROTOCOL) == {"argv", "start", "stop", "health", "readiness", "probe", "metrics"}
    for name, cls in engines.ENGINES.items():
        assert cls.name == name and cls.description
        for method in PROTOCOL:
            theirs = inspect.signature(getattr(cls, method))
            ours = inspect.signature(getattr(Engine, method))
            assert list(theirs.parameters) == list(ours.parameters), (name, method)


def test_an_unknown_engine_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InputError, match="No engine is named 'sglang'") as refused:
        engines.engine("sglang")
    assert "embedded, vllm, replicas, gateway, ollama" in refused.value.next_step


def test_the_llama_cpp_engine_says_its_argv_without_starting(settings: Settings, smollm2_gguf: Path) -> None:
    engine = engines.engine("embedded")
    try:
        argv = engine.argv(settings, StartOptions(source=smollm2_gguf, name="a", ctx_size=256, parallel=1, threads=1), 8123)
    except Exception as exc:  # noqa: BLE001 - without the native build the refusal itself is the answer
        assert "natively built llama-server" in str(exc)
        return
    assert argv[0].endswith("llama-server") and argv[argv.index("--port") + 1] == "8123" and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert list_models(settings) == []


def test_serve_start_of_a_directory_is_refused_on_the_cli(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "m-q4.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("MODEL_SERVING_ROOTS", str(tmp_path))
    code, _, err = cli_in_process(capsys, "serve", "start", str(folder), "--name", "m")
    assert code != 0 and "Traceback" not in err and "IsADirectoryError" not in err
    assert f"{folder} is a directory, not a GGUF file; it holds m-q4.gguf" in err and str(folder / "m-q4.gguf") in err
    assert list_models(settings) == []


@pytest.mark.anyio
async def test_serve_start_of_a_directory_is_refused_on_mcp(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    async with Client(create_server(settings)) as client:
        refused = await client.call_tool("serve_start", {"gguf_path": str(folder), "name": "m"})
        registered = await client.call_tool("register_model", {"gguf_path": str(folder), "name": "m"})
    for result in (refused, registered):
        text = result.content[0].text
        assert result.is_error and "is a directory, not a GGUF file, and it holds no .gguf file" in text and "bug" not in text
        assert "Pass the .gguf file itself" in text
