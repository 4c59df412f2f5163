"""The REST client against the Ollama test double: blobs, create, streams, errors, management, inference."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest
from ollama_double import OllamaDouble

from model_serving.errors import ServingError, VerificationFailed
from model_serving.serve.ollama.client import ModelNotFound, OllamaAPIError, OllamaClient, OllamaUnreachable
from model_serving.settings import Settings


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=2)
def _file_digest(path: Path) -> str:
    return _digest(path.read_bytes())


def _create_smollm2(client: OllamaClient, gguf: Path, name: str = "smol", **extra) -> None:
    digest = _file_digest(gguf)
    client.push_blob(gguf, digest)
    client.create({"model": name, "files": {gguf.name: digest}, **extra})


def test_unreachable_server_says_how_to_start_it(settings: Settings) -> None:
    client = OllamaClient(settings)
    assert client.is_up() is False
    with pytest.raises(OllamaUnreachable) as err:
        client.version()
    assert "127.0.0.1:9" in err.value.cause
    assert "ollama serve" in err.value.next_step


def test_version_and_liveness(ollama_settings: Settings, ollama_double: OllamaDouble) -> None:
    ollama_double.version = "0.31.2"
    with OllamaClient(ollama_settings) as client:
        assert client.is_up()
        assert client.version() == "0.31.2"


def test_blob_upload_is_verified_and_idempotent(ollama_settings: Settings, ollama_double: OllamaDouble, tmp_path: Path) -> None:
    data = b"not a model, just bytes" * 1000
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = _digest(data)
    with OllamaClient(ollama_settings) as client:
        assert client.has_blob(digest) is False
        raw = httpx.post(f"{ollama_double.url}/api/blobs/{digest}", content=data)
        assert raw.status_code == 201
        assert httpx.post(f"{ollama_double.url}/api/blobs/{digest}", content=data).status_code == 200
        assert client.has_blob(digest)
        assert client.push_blob(path, digest) is False  # HEAD finds it: nothing sent
        wrong = _digest(b"other")
        mismatch = httpx.post(f"{ollama_double.url}/api/blobs/{wrong}", content=data)
        assert mismatch.status_code == 400 and "digest mismatch" in mismatch.json()["error"]
        with pytest.raises(VerificationFailed, match="digest mismatch"):
            client.push_blob(path, wrong)
        assert client.has_blob(wrong) is False
        assert httpx.head(f"{ollama_double.url}/api/blobs/sha256:xyz").status_code == 400


def test_dropped_upload_is_retried_and_stores_nothing_half_way(ollama_settings: Settings, ollama_double: OllamaDouble, tmp_path: Path) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: the double cuts the connection after half
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = _digest(data)
    with OllamaClient(ollama_settings) as client:
        ollama_double.drop_uploads = 1
        assert client.push_blob(path, digest, retry_delay=0.01) is True
        assert client.has_blob(digest)
        other = tmp_path / "other.bin"
        other.write_bytes(data[::-1])
        ollama_double.drop_uploads = 3
        with pytest.raises(ServingError, match="broke off 3 times") as err:
            client.push_blob(other, _digest(data[::-1]), attempts=3, retry_delay=0.01)
        assert "run the command again" in err.value.next_step
        assert client.has_blob(_digest(data[::-1])) is False
    assert not list((ollama_double.root / "blobs").glob("*partial*"))


@pytest.mark.parametrize(("body", "message"), [
    ({"modelfile": "FROM llama3"}, "invalid model name"),
    ({"model": "m", "modelfile": "FROM llama3"}, "neither 'from' or 'files' was specified"),
    ({"model": "bad name!", "files": {"/abs/x.gguf": "sha256:" + "0" * 64}}, "file path must be relative"),
    ({"model": "bad name!", "files": {"x.gguf": ""}}, "invalid digest format"),
    ({"model": "bad name!", "files": {"x.gguf": "sha256:" + "0" * 64}}, "invalid model name"),
])
def test_create_rejects_bodies_in_ollamas_order(ollama_double: OllamaDouble, body: dict, message: str) -> None:
    response = httpx.post(f"{ollama_double.url}/api/create", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_error_line_in_the_create_stream(ollama_settings: Settings, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUX" + b"\0" * 4096)
    digest = _digest(junk.read_bytes())
    statuses: list[str] = []
    with OllamaClient(ollama_settings) as client:
        client.push_blob(junk, digest)
        with pytest.raises(OllamaAPIError) as err:
            client.create({"model": "junk", "files": {"junk.gguf": digest}}, lambda obj: statuses.append(obj["status"]))
        assert err.value.mid_stream
        assert "failed to validate GGUF" in err.value.cause
        assert statuses == ["parsing GGUF"]
        assert client.list() == []


def test_unknown_models_are_404(ollama_settings: Settings, ollama_double: OllamaDouble) -> None:
    with OllamaClient(ollama_settings) as client:
        with pytest.raises(ModelNotFound, match="model 'nope:latest' not found") as err:
            client.show("nope")
        assert "model-serving ollama list" in err.value.next_step
        with pytest.raises(ModelNotFound):
            client.delete("nope")
        with pytest.raises(ModelNotFound, match='model "nope" not found'):
            client.copy("nope", "other")
        with pytest.raises(ModelNotFound):
            client.chat("nope", [{"role": "user", "content": "hi"}])


def test_non_local_host_header_is_refused(ollama_double: OllamaDouble) -> None:
    response = httpx.get(f"{ollama_double.url}/api/version", headers={"Host": "evil.example"})
    assert response.status_code == 403


def test_quantize_rules(ollama_settings: Settings, smollm2_gguf: Path) -> None:
    with OllamaClient(ollama_settings) as client:
        _create_smollm2(client, smollm2_gguf, "base")
        with pytest.raises(OllamaAPIError, match="unsupported quantization type q3_K_M"):
            client.create({"model": "q", "from": "base", "quantize": "q3_K_M"})
        with pytest.raises(OllamaAPIError, match="only supported for F16, BF16 and F32"):
            client.create({"model": "q", "from": "base", "quantize": "q4_K_M"})  # SmolLM2 here is already Q4_1
        assert [m.name for m in client.list()] == ["base:latest"]


def test_management_endpoints(ollama_settings: Settings, smollm2_gguf: Path) -> None:
    with OllamaClient(ollama_settings) as client:
        _create_smollm2(client, smollm2_gguf, "smol", parameters={"num_ctx": 1024, "stop": ["<|im_end|>"]}, system="Be brief.")
        [entry] = client.list()
        assert entry.name == "smol:latest" and entry.details.family == "llama" and entry.details.quantization_level == "Q4_1"
        assert entry.size == smollm2_gguf.stat().st_size
        info = client.show("smol")
        assert info.system == "Be brief."
        assert info.parameter_values() == {"num_ctx": ["1024"], "stop": ["<|im_end|>"]}
        assert "general.name" not in info.model_info and "tokenizer.chat_template" not in info.model_info
        assert info.model_info["tokenizer.ggml.tokens"] is None  # arrays only with verbose
        assert len(client.show("smol", verbose=True).model_info["tokenizer.ggml.tokens"]) == 49152
        assert "<|im_start|>" in info.template  # no Go TEMPLATE: the GGUF's Jinja template (Ollama 0.30+)
        client.copy("smol", "smol:v1")
        assert sorted(m.name for m in client.list()) == ["smol:latest", "smol:v1"]
        client.delete("smol:v1")
        assert [m.name for m in client.list()] == ["smol:latest"]


@pytest.mark.slow
def test_chat_with_real_inference_stop_length_unload_and_busy(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path) -> None:
    with OllamaClient(ollama_settings) as client:
        _create_smollm2(client, smollm2_gguf, "smol", parameters={"num_ctx": 1024, "stop": ["<|im_end|>", "<|im_start|>"]})
        messages = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]
        done = client.chat("smol", messages, options={"temperature": 0, "num_predict": 128}, keep_alive="10m")
        assert done.done_reason == "stop" and "Paris" in done.content
        assert done.prompt_eval_count > 10 and done.eval_count > 0
        assert done.eval_duration > 0 and done.prompt_eval_duration > 0 and done.total_duration >= done.eval_duration
        [running] = client.ps()
        assert running.name == "smol:latest" and running.size_vram == 0 and running.processor == "100% CPU" and running.context_length == 1024
        # the same prompt again: the cached prefix is not evaluated again
        again = client.chat("smol", messages, options={"temperature": 0, "num_predict": 128})
        assert again.prompt_eval_count < done.prompt_eval_count
        cut = client.chat("smol", [{"role": "user", "content": "Count from one to fifty in words."}], options={"temperature": 0, "num_predict": 3})
        assert cut.done_reason == "length" and cut.eval_count == 3
        assert client.unload("smol").done_reason == "unload"
        assert client.ps() == []

        # a queue of zero: while one request runs, the next gets 503
        ollama_double.max_queue = 0
        ollama_double.inference.acquire()
        first = threading.Thread(target=client.chat, args=("smol", messages), kwargs={"options": {"num_predict": 1}})
        try:
            first.start()
            deadline = time.monotonic() + 10
            while ollama_double._pending == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            with OllamaClient(ollama_settings) as other, pytest.raises(OllamaAPIError) as err:
                other.chat("smol", messages)
            assert err.value.status == 503 and "OLLAMA_MAX_QUEUE" in err.value.next_step
        finally:
            ollama_double.inference.release()
            first.join(60)


@pytest.mark.slow
def test_error_line_in_a_chat_stream(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path) -> None:
    with OllamaClient(ollama_settings) as client:
        _create_smollm2(client, smollm2_gguf, "smol", parameters={"num_ctx": 512})
        ollama_double.stream_error_after["/api/chat"] = 1
        with pytest.raises(OllamaAPIError) as err:
            client.chat("smol", [{"role": "user", "content": "Tell me a story about a cat."}], options={"num_predict": 20, "temperature": 0})
        assert err.value.mid_stream and "injected failure" in err.value.message


def test_pull_from_the_registry_and_unknown_names(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path) -> None:
    ollama_double.registry["smollm2:135m"] = smollm2_gguf
    seen: list[str] = []
    with OllamaClient(ollama_settings) as client:
        client.pull("smollm2:135m", lambda obj: seen.append(obj["status"]))
        assert seen[0] == "pulling manifest" and seen[-1] == "success"
        assert [m.name for m in client.list()] == ["smollm2:135m"]
        with pytest.raises(OllamaAPIError, match="file does not exist") as err:
            client.pull("does-not-exist")
        assert err.value.mid_stream


@pytest.mark.slow
def test_ollama_quantizes_an_f16_gguf(ollama_settings: Settings, tiny_gguf: Path) -> None:
    from model_serving.errors import InputError
    from model_serving.gguf.info import read_gguf
    from model_serving.jobs import Progress
    from model_serving.serve.ollama.plan import plan_quantize

    info = read_gguf(tiny_gguf)
    assert info.file_type == "F16"
    assert plan_quantize(info, tiny_gguf, "Q4_K_M", None, Progress()) == (tiny_gguf, "q4_K_M", "ollama")
    with pytest.raises(InputError, match="model-serving quantize"):
        plan_quantize(info, tiny_gguf, "q5_K_M", None, Progress())  # not one Ollama does, and no quantizer given
    statuses: list[str] = []
    with OllamaClient(ollama_settings) as client:
        digest = _file_digest(tiny_gguf)
        client.push_blob(tiny_gguf, digest)
        client.create({"model": "tiny", "files": {tiny_gguf.name: digest}, "quantize": "q8_0"}, lambda obj: statuses.append(obj["status"]))
        assert "quantizing F16 model to Q8_0" in statuses
        assert client.show("tiny").details.quantization_level == "Q8_0"
