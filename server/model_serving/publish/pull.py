"""The pull side: `hf.co/USER/REPO[:QUANT]`, or `USER/REPO` when that repo holds GGUFs and no safetensors,
downloads just the one quantization with huggingface_hub. On a GGUF repo the quant names the file to pick
(a `:QUANT` tag wins); the file is served as it is."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from model_serving.checkpoint.export import REPO_ID
from model_serving.errors import InputError, ServingError
from model_serving.settings import Settings

# Imported inside functions: huggingface_hub and httpx2, about a second to import, only when the Hub is called.

HF_REF = re.compile(r"^(?:https?://)?(?:hf\.co|huggingface\.co)/([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?::([A-Za-z0-9_]+))?$")
_TYPE = re.compile(r"[-._]([A-Za-z0-9_]+)\.gguf$", re.IGNORECASE)  # model-Q4_K_M.gguf, model.Q4_K_M.gguf


def is_hub_gguf(raw: str) -> bool:
    return HF_REF.match(raw) is not None


def _api(settings: Settings) -> Any:
    from huggingface_hub import HfApi

    token = settings.hf_token.get_secret_value() if settings.hf_token else None  # else the client's own HF_TOKEN or login
    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)


def _list(settings: Settings, repo: str) -> list[str]:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return list(_api(settings).list_repo_files(repo))
    except HfHubHTTPError as exc:
        raise ServingError(f"Could not list {repo} on the Hub: {type(exc).__name__}.", "Check the repo id, and HF_TOKEN for a private repo.") from exc


def gguf_repo_files(settings: Settings, repo: str) -> list[str] | None:
    """The .gguf files of a GGUF repo (GGUFs and no safetensors); None for a checkpoint repo, or when the Hub
    cannot be asked (offline, refused), so the export path and its own errors take over as before."""
    import httpx2  # huggingface_hub's own transport: its connection errors are not HfHubHTTPError
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, "config.json"), str):
        return None  # a checkpoint already in the local cache: no listing (and no retries when offline)
    try:
        files = _list(settings, repo)
    except (ServingError, httpx2.HTTPError, OSError):  # OfflineModeIsEnabled is an OSError
        return None
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    return ggufs if ggufs and not any(f.endswith(".safetensors") for f in files) else None


def quant_of(filename: str) -> str:
    match = _TYPE.search(filename.rsplit("/", 1)[-1])
    return match.group(1).upper() if match else filename


def pick(repo: str, ggufs: list[str], quant: str) -> str:
    """The one file named for `quant` (case-insensitive, as Ollama's hf.co tags match)."""
    wanted = [f for f in ggufs if quant_of(f) == quant.upper()]
    if len(wanted) != 1:
        names = ", ".join(sorted({quant_of(f) for f in ggufs})) or "none"
        raise InputError(f"{repo} has {'no' if not wanted else 'more than one'} GGUF of type {quant} (it has: {names}).",
                         "On a GGUF repo quant picks the file: pass quant (--quant) as one of those, or hf.co/USER/REPO:QUANT.")
    return wanted[0]


def pull_gguf(settings: Settings, repo: str, quant: str, ggufs: list[str] | None = None) -> Path:
    """Download the `quant` GGUF of `repo` (resumable) under the state folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    ggufs = ggufs if ggufs is not None else [f for f in _list(settings, repo) if f.lower().endswith(".gguf")]
    name = pick(repo, ggufs, quant)
    api = _api(settings)
    try:
        return Path(hf_hub_download(repo, name, local_dir=settings.state_dir / "hub" / repo.replace("/", "--"), endpoint=api.endpoint,
                                    token=api.token))
    except HfHubHTTPError as exc:
        raise ServingError(f"The Hub refused the download of {name} from {repo}: {type(exc).__name__}.",
                           "Run the deploy again (the download resumes); check HF_TOKEN for a private repo.") from exc


def hub_gguf(settings: Settings, raw: str, quant: str) -> tuple[str, Path] | None:
    """(label, local file) for `hf.co/USER/REPO[:QUANT]` or a GGUF repo id; None for anything else."""
    match = HF_REF.match(raw)
    if match:
        repo, tag = match.group(1), match.group(2) or quant
        return f"hf.co/{repo}:{tag.upper()}", pull_gguf(settings, repo, tag)

    if not REPO_ID.match(raw) or Path(raw).expanduser().exists():
        return None
    ggufs = gguf_repo_files(settings, raw)
    return None if ggufs is None else (f"hf.co/{raw}:{quant.upper()}", pull_gguf(settings, raw, quant, ggufs))
