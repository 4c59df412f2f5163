"""One-pass hashing: export's sha256 is taken while the converter writes, and equals a fresh read of the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_serving.settings import Settings
from model_serving.util.filehash import BackgroundHash, HashCache
from model_serving.util.paths import sha256_file

# Writers run as real child processes, as the converter does: front to back in flushed chunks,
# or seeking back to rewrite the header (what llama-quantize does), or truncating and starting over.
WRITERS = {
    "front to back": "for i in range(40):\n    f.write(bytes([i]) * 100_000); f.flush(); time.sleep(0.005)",
    "rewrites its header": "f.write(b'\\0' * 4096)\nfor i in range(40):\n    f.write(bytes([i]) * 100_000); f.flush(); time.sleep(0.005)\nf.seek(0); f.write(b'H' * 4096)",
    "truncates and starts over": "f.write(b'x' * 3_000_000); f.flush(); time.sleep(0.2); f.truncate(0); f.seek(0)\nfor i in range(10):\n    f.write(bytes([i]) * 100_000); f.flush()",
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_following_hash_is_the_files_sha256(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "out.gguf.partial"
    following = BackgroundHash(target, growing=True)
    script = f"import time\nwith open({str(target)!r}, 'wb') as f:\n" + "\n".join("    " + line for line in WRITERS[writer].splitlines())
    subprocess.run([sys.executable, "-c", script], check=True)
    assert following.result() == sha256_file(target)


def test_a_finished_file_is_hashed_once_into_the_one_cache(tmp_path: Path) -> None:
    import threading

    from model_serving.errors import ServingError

    source = tmp_path / "in.gguf"
    source.write_bytes(bytes(range(256)) * 20_000)  # over the cache's 1 MiB floor
    cache = HashCache(tmp_path / "state")
    assert BackgroundHash(source, cache=cache).result() == sha256_file(source)
    assert cache.get(source) == sha256_file(source)  # the next reader (quantize, an Ollama registration) finds it
    known = BackgroundHash(source, cache=cache)
    assert not known._thread.is_alive() and known.result() == cache.get(source)  # no second read
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ServingError, match="did not finish"):
        BackgroundHash(tmp_path / "in.gguf", cancel=cancel).result()
    job = threading.Event()
    BackgroundHash(source, cancel=job).stop()
    assert not job.is_set()  # stopping one hash never cancels the job it serves


def test_following_hash_of_a_file_never_written_is_refused_cleanly(tmp_path: Path) -> None:
    following = BackgroundHash(tmp_path / "never.gguf", growing=True)
    following.stop()  # what a failed or cancelled converter leaves: no digest, no thread left behind
    assert not following._thread.is_alive()


def test_export_records_the_sha256_of_its_output_and_hands_it_to_the_hash_cache(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from model_serving.checkpoint.export import export_gguf

    settings = Settings.from_env(roots=[str(tmp_path), str(tiny_checkpoint.parent)], home=str(tmp_path / "home"))
    result = export_gguf(settings, str(tiny_checkpoint), str(tmp_path / "tiny-f16.gguf"))
    out = Path(result.output_path)
    assert result.sha256 == sha256_file(out)
    assert HashCache(settings.state_dir).get(out) == result.sha256  # quantize reads it from here instead of the file
    sidecar = json.loads(out.with_name(out.name + ".export.json").read_text())
    assert sidecar["sha256"] == result.sha256 and sidecar["source_sha256"] == result.source_sha256
    again = export_gguf(settings, str(tiny_checkpoint), str(out))
    assert again.skipped and again.source_sha256 == result.source_sha256  # the background source hash is the one the reuse check computes
