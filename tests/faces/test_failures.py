"""The one failure table (failures.py): what a user can cause reaches either face as a cause and a next step."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_runner import cli_in_process
from huggingface_hub.errors import OfflineModeIsEnabled
from mcp import Client

from model_serving.errors import InputError, ServingError
from model_serving.failures import failure
from model_serving.mcp.server import create_server
from model_serving.settings import Settings


def _raised(exc: BaseException, wrapper: type[Exception] = RuntimeError) -> BaseException:
    """`exc` as a library raises it: wrapped, with the original as its cause."""
    try:
        try:
            raise exc
        except BaseException as inner:
            raise wrapper("wrapped") from inner
    except BaseException as outer:
        return outer


def test_library_and_os_failures_map_to_a_cause_and_a_next_step() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused", request=httpx.Request("GET", "http://127.0.0.1:1/api/whoami-v2"))
    cases = {
        "HF_HUB_OFFLINE": _raised(OfflineModeIsEnabled("offline")),
        "http://127.0.0.1:1 could not be reached ([Errno 111] Connection refused)": _raised(refused),
        "/m is a folder where a file is expected": IsADirectoryError(errno.EISDIR, "Is a directory", "/m"),
        "The disk is full (/d/x.gguf)": OSError(errno.ENOSPC, "No space left on device", "/d/x.gguf"),
    }
    for cause, exc in cases.items():
        mapped = failure(exc, "verb")
        assert mapped is not None and cause in mapped.cause and mapped.next_step, (cause, mapped)
    assert isinstance(failure(cases["/m is a folder where a file is expected"]), InputError)
    assert failure(KeyError("a bug")) is None, "a bug must stay a bug, not be worded as the user's fault"
    ours = ServingError("ours", "do this")
    assert failure(_raised(ours)) is ours


def roots(settings: Settings) -> list[str]:
    return [arg for root in settings.roots for arg in ("--root", str(root))]


def test_a_folder_where_a_gguf_belongs_is_refused_on_both_faces(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import anyio

    folder = tmp_path / "not-a-file.gguf"
    folder.mkdir()
    code, out, err = cli_in_process(capsys, *roots(settings), "serve", "start", str(folder), "--name", "dir")
    assert code == 2 and "next step:" in err and "Traceback" not in out + err and "bug" not in err, err

    async def call() -> tuple[bool, str]:
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("serve_start", {"gguf_path": str(folder), "name": "dir"})
        return bool(result.is_error), result.content[0].text  # type: ignore[union-attr]

    is_error, text = anyio.run(call)
    assert is_error and "Next step:" in text and "bug in model-serving" not in text, text


# Every verb that takes a GGUF, given a folder and a GGUF cut short: (CLI argv after the path, MCP tool, MCP arguments but the path).
GGUF_VERBS = [
    (["inspect"], [], "inspect_model", "path", {}),
    (["quantize"], ["Q4_0"], "quantize_gguf", "input_path", {"qtype": "Q4_0"}),
    (["register"], ["--name", "x"], "register_model", "gguf_path", {"name": "x"}),
    (["serve", "start"], ["--name", "x"], "serve_start", "gguf_path", {"name": "x"}),
    (["ollama", "modelfile"], [], "ollama_modelfile", "gguf_path", {}),
    (["deploy"], ["--plan"], "deploy_model", "source", {"plan": True}),
    (["publish"], ["--repo", "a/b", "--plan"], "publish_model", "source", {"repo": "a/b", "plan": True}),
]


@pytest.fixture
def bad_ggufs(tmp_path: Path, tiny_gguf: Path) -> list[Path]:
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:100])
    return [folder, cut]


def test_a_folder_or_a_truncated_gguf_is_refused_by_every_verb_on_both_faces(settings: Settings, bad_ggufs: list[Path],
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import anyio

    for path in bad_ggufs:
        for verb, rest, _, _, _ in GGUF_VERBS:
            code, out, err = cli_in_process(capsys, *roots(settings), *verb, str(path), *rest)
            assert code == 2 and "next step:" in err and "Traceback" not in out + err and "bug" not in err, (verb, path.name, err)

    async def calls() -> list[tuple[str, str, Any]]:
        found = []
        async with Client(create_server(settings)) as client:
            for path in bad_ggufs:
                for _, _, tool, field, extra in GGUF_VERBS:
                    result = await client.call_tool(tool, {field: str(path), **extra})
                    while not result.is_error and (result.structured_content or {}).get("status") == "working":
                        result = await client.call_tool("job_status", {"job_id": result.structured_content["taskId"], "wait_s": 5})
                    found.append((tool, path.name, result))
        return found

    for tool, name, result in anyio.run(calls):
        text = result.content[0].text
        assert result.is_error and "Next step:" in text and "bug in model-serving" not in text, (tool, name, text)
