"""The one failure table (failures.py): what a user can cause reaches either face as a cause and a next step."""

from __future__ import annotations

import errno
from pathlib import Path

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
