"""One deploy per name at a time: a claim held from the plan to the manifest.

Two deploys of one name would both pass the plan's "name is free" check, then start two engines and
race on one record. The claim (util/claim.py) on `state/deploys/<name>.lock` is taken right after the
plan knows the name and before any long work: the second deploy is refused at once, naming the first.
A killed deploy never leaves a claim that blocks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from model_serving.errors import InputError
from model_serving.settings import Settings
from model_serving.util import claim


def claim_path(settings: Settings, name: str) -> Path:
    return settings.state_dir / "deploys" / f"{name}.lock"


@contextlib.contextmanager
def deploy_claim(settings: Settings, name: str, source: str) -> Iterator[Path]:
    """Hold the deploy claim on `name` for the block; refuse with the holder's pid and source when another deploy has it."""
    path = claim_path(settings, name)
    try:
        with claim.hold(path, source=source):
            yield path
    except claim.Claimed as exc:
        raise _refusal(name, exc.holder) from None


def _refusal(name: str, holder: dict[str, Any]) -> InputError:
    who = f" (pid {holder['pid']}" + (f", deploying {holder['source']}" if holder.get("source") else "") + ")" if holder.get("pid") else ""
    since = holder.get("since")
    ago = f", started {time.time() - since:.0f} s ago" if isinstance(since, int | float) else ""
    return InputError(f"Another deploy of {name!r} is running{who}{ago}; two deploys of one name would start two engines.",
                      f"Wait for it to finish (then `model-serving serve list` shows {name!r}), or deploy under another name (--name).")


def deploy_running(settings: Settings, name: str) -> InputError | None:
    """The refusal a deploy of `name` would get now (for a plan, which claims nothing), or None when no deploy holds it."""
    holder = claim.holder(claim_path(settings, name))
    return None if holder is None else _refusal(name, holder)
