"""One test per guard: path confinement, flag injection, all-or-nothing writes, endpoints, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_serving.errors import InputError, PathNotAllowed
from model_serving.settings import Settings, normalize_host
from model_serving.util.paths import atomic_output, confine, refuse_flag


def test_confine_accepts_a_path_inside_a_root(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"x")
    assert confine(tmp_path / "m.gguf", [tmp_path]) == (tmp_path / "m.gguf").resolve()


def test_confine_refuses_a_path_outside_the_roots(tmp_path: Path) -> None:
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        confine("/etc/passwd", [tmp_path])


def test_confine_refuses_dotdot_traversal(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(PathNotAllowed):
        confine(root / ".." / ".." / "etc" / "passwd", [root])


def test_confine_refuses_a_symlink_that_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("s", encoding="utf-8")
    (root / "link.gguf").symlink_to(outside)
    with pytest.raises(PathNotAllowed, match="resolves to"):
        confine(root / "link.gguf", [root])


def test_confine_refuses_nul_bytes_and_option_like_values(tmp_path: Path) -> None:
    with pytest.raises(PathNotAllowed):
        confine("a\x00b", [tmp_path])
    with pytest.raises(InputError, match="starts with '-'"):
        confine("--outfile=/etc/x", [tmp_path], must_exist=False)
    with pytest.raises(InputError):
        refuse_flag("-rf")


def test_confine_reports_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        confine(tmp_path / "nope.gguf", [tmp_path])


def test_atomic_output_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    final = tmp_path / "out.gguf"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("converter died")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    final = tmp_path / "out.gguf"
    final.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        with atomic_output(final):
            pass
    assert final.read_bytes() == b"precious"
    with atomic_output(final, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new"


def test_endpoints_are_configured_names_or_loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_SERVING_ENDPOINTS", "gpu=http://10.1.2.3:8000")
    settings = Settings.from_env(roots=[str(tmp_path)], home=str(tmp_path / "h"))
    assert settings.resolve_endpoint("gpu") == "http://10.1.2.3:8000"
    assert settings.resolve_endpoint("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert settings.resolve_endpoint("localhost:11434") == "http://localhost:11434"
    for bad in ("http://10.1.2.3:8000", "http://169.254.169.254/latest", "https://example.com"):
        with pytest.raises(InputError, match="neither configured nor a loopback"):
            settings.resolve_endpoint(bad)


def test_ollama_host_forms_are_normalized() -> None:
    assert normalize_host("0.0.0.0") == "http://127.0.0.1:11434"
    assert normalize_host("127.0.0.1:1234") == "http://127.0.0.1:1234"
    assert normalize_host("https://ollama.example:443/") == "https://ollama.example:443"


def test_tokens_never_appear_in_results_or_output(tmp_path: Path) -> None:
    env = {**os.environ, "HF_TOKEN": "hf_SECRETSECRET123", "OLLAMA_API_KEY": "ok_SECRET456", "MODEL_SERVING_HOME": str(tmp_path / "h"),
           "OLLAMA_HOST": "http://127.0.0.1:9"}
    settings = Settings.from_env(roots=[str(tmp_path)], home=str(tmp_path / "h"))
    assert "SECRET" not in repr(settings)
    out = subprocess.run([sys.executable, "-m", "model_serving", "--json", "--root", str(tmp_path), "status"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "SECRET" not in out.stdout + out.stderr
    assert json.loads(out.stdout)["ollama"]["reachable"] is False


def test_mcp_http_transport_binds_loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mcp.server.mcpserver import MCPServer

    from model_serving.mcp import server as mcp_server

    seen: dict[str, object] = {}
    monkeypatch.setattr(MCPServer, "run", lambda self, *a, **k: seen.update(args=a, kwargs=k))
    mcp_server.main(["--http", "--port", "8799", "--root", str(tmp_path), "--home", str(tmp_path / "h")])
    assert seen["args"] == ("streamable-http",)
    assert seen["kwargs"]["host"] == "127.0.0.1"
