"""The pull side: `hf.co/USER/REPO:QUANT` downloads just that quantization with huggingface_hub."""

from __future__ import annotations

import os
import re
from pathlib import Path

from model_serving.errors import InputError, ServingError
from model_serving.settings import Settings

HF_REF = re.compile(r"^(?:https?://)?(?:hf\.co|huggingface\.co)/([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?::([A-Za-z0-9_]+))?$")


def is_hub_gguf(raw: str) -> bool:
    return HF_REF.match(raw) is not None


def pull_gguf(settings: Settings, raw: str) -> Path:
    """Download `{model}-{QUANT}.gguf` from the repo (default quant: the only GGUF, else Q4_K_M) under the state folder."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    match = HF_REF.match(raw)
    assert match is not None
    repo, quant = match.group(1), match.group(2)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        ggufs = [f for f in HfApi(endpoint=endpoint).list_repo_files(repo) if f.endswith(".gguf")]
    except HfHubHTTPError as exc:
        raise ServingError(f"Could not list {repo} on the Hub: {type(exc).__name__}.", "Check the repo id, and HF_TOKEN for a private repo.") from exc
    wanted = [f for f in ggufs if f.upper().endswith(f"-{quant.upper()}.GGUF")] if quant else (ggufs if len(ggufs) == 1 else [])
    if not quant and not wanted:
        wanted = [f for f in ggufs if f.upper().endswith("-Q4_K_M.GGUF")]
    if len(wanted) != 1:
        names = ", ".join(f.rsplit("-", 1)[-1].removesuffix(".gguf") for f in ggufs) or "none"
        raise InputError(f"{repo} has no single GGUF for {quant or 'the default quant'} (it has: {names}).",
                         f"Deploy hf.co/{repo}:QUANT with one of those types.")
    target = settings.state_dir / "hub" / repo.replace("/", "--")
    return Path(hf_hub_download(repo, wanted[0], local_dir=target, endpoint=endpoint))
