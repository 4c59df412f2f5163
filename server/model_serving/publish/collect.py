"""What a publish sends: the GGUFs a deploy wrote (renamed for the `hf.co/USER/REPO:QUANT` pull convention),
the deploy manifest, and the Ollama side files a `hf.co` pull reads (template, params, system)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_serving.errors import InputError
from model_serving.gguf.info import GGUFInfo, read_gguf
from model_serving.settings import Settings
from model_serving.util.paths import confine, sha256_file

from .lineage import Include, Lineage, lineage

# Imported inside functions: serve.ollama.plan (jinja2), only for the Ollama files of the upload.

# The Hub refuses a single file over 50 GB; checked before any hashing or upload.
HUB_FILE_LIMIT = 50 * 1000**3


@dataclass
class Upload:
    path_in_repo: str
    local: Path | None = None  # None: generated content in `data`
    data: bytes = b""
    size: int = 0
    sha256: str = ""
    git_oid: str = ""  # what the Hub reports for a regular (non-LFS) file

    def content(self) -> bytes:
        return self.local.read_bytes() if self.local else self.data


@dataclass
class Collected:
    model: str
    manifest: dict[str, Any]
    ggufs: list[tuple[Upload, GGUFInfo, str | None]]  # the file, its header, its quality verdict if measured
    side: list[Upload] = field(default_factory=list)
    lineage: Lineage = field(default_factory=Lineage)
    checkpoint: list[Upload] = field(default_factory=list)  # the merged checkpoint's or the adapter's files, if asked for


def hashed(upload: Upload) -> Upload:
    if upload.local is not None:
        upload.size = upload.local.stat().st_size
        upload.sha256 = sha256_file(upload.local)
        upload.git_oid = _git_oid(upload.local.read_bytes()) if upload.size < 10_000_000 else ""
    else:
        upload.size, upload.sha256 = len(upload.data), hashlib.sha256(upload.data).hexdigest()
        upload.git_oid = _git_oid(upload.data)
    return upload


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _refuse_oversized(files: list[Path]) -> None:
    for file in files:
        if file.stat().st_size > HUB_FILE_LIMIT:
            raise InputError(f"{file.name} is {file.stat().st_size} bytes, over the Hub's per-file limit of {HUB_FILE_LIMIT} bytes.",
                             "Publish a smaller quantization (e.g. Q4_K_M), or split it with llama-gguf-split first." if file.suffix == ".gguf"
                             else "Save the checkpoint in shards (save_pretrained with max_shard_size), then publish again.")


def collect(settings: Settings, source: str, repo: str, include: Include | None = None) -> Collected:
    """Find the artifacts under a deploy folder (or one .gguf); refuse a file over the Hub's limit before hashing."""
    path = confine(source, settings.roots, what="deploy folder or GGUF file")
    if path.is_dir():
        ggufs = sorted(p for p in path.glob("*.gguf") if not p.name.startswith("."))
        manifests = sorted(path.glob("*.deploy.json"))
    else:
        ggufs, manifests = ([path] if path.suffix == ".gguf" else []), []
    if not ggufs:
        raise InputError(f"{path} holds no .gguf file to publish.", "Pass a deploy folder (deployments/<name>) or a .gguf file.")
    manifest = json.loads(manifests[0].read_text(encoding="utf-8")) if manifests else {}
    found_lineage = lineage(settings, manifest, include)
    _refuse_oversized(ggufs + found_lineage.files)
    model = repo.split("/")[1]
    served = (manifest.get("artifacts", {}).get("served") or {}).get("sha256")
    verdict = (manifest.get("result", {}).get("quality") or {}).get("verdict")
    found = []
    for gguf in ggufs:
        info = read_gguf(gguf)
        up = hashed(Upload(f"{model}-{(info.file_type or 'F16').upper()}.gguf", gguf))
        found.append((up, info, verdict if served == up.sha256 else None))
    side = [hashed(Upload(manifests[0].name, manifests[0]))] if manifests else []
    return Collected(model=model, manifest=manifest, ggufs=found, side=side + ollama_files(settings, ggufs[0]), lineage=found_lineage,
                     checkpoint=[hashed(Upload(f.name, f)) for f in found_lineage.files])


def ollama_files(settings: Settings, gguf: Path) -> list[Upload]:
    """`template` (our verified Go template) and `params` (stops, num_ctx), as `ollama run hf.co/...` reads them."""
    from model_serving.serve.ollama.plan import build_modelfile

    plan = build_modelfile(settings, gguf, local=False)
    files = [hashed(Upload("params", data=json.dumps({"stop": plan.stops, "num_ctx": plan.num_ctx}, indent=2).encode()))]
    if plan.go_template:
        files.append(hashed(Upload("template", data=plan.go_template.encode())))
    if plan.modelfile.system:
        files.append(hashed(Upload("system", data=plan.modelfile.system.encode())))
    return files
