"""`history NAME` (every version: source, quant, results, when it was live) and `prune NAME` (the old ones removed).

Prune never removes the live version or the canary, and keeps `keep` versions in all (those two first, then the newest). Removing a version stops
its engine (Ollama: deletes its tag; the blobs another tag uses stay), deletes its output folder (only the files that
are its own when versions share a folder, and never a file outside the configured roots, so a GGUF deployed as it is
stays where the user keeps it) and keeps its history row, marked pruned. The plan says what each removal frees.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.settings import Settings
from model_serving.util.paths import confine

from . import store
from .resolve import base_url

DEFAULT_KEEP = 2


class VersionRow(store.Version):
    live: bool = False
    canary_share: int | None = None
    base_url: str | None = None


class VersionHistory(BaseModel):
    name: str
    live: int | None
    previous: list[int]
    canary: store.Canary | None
    versions: list[VersionRow]


class PrunedVersion(BaseModel):
    n: int
    served_as: str
    removed: list[str] = Field(default_factory=list, description="Files and folders removed (or, in a plan, to remove)")
    freed_bytes: int = 0


class PruneResult(BaseModel):
    name: str
    planned: bool
    keep: int
    pruned: list[PrunedVersion]
    kept: list[str] = Field(default_factory=list, description="Each version kept, and why")
    freed_bytes: int = 0


def history(settings: Settings, name: str) -> VersionHistory:
    book = store.require(settings, _plain(name, "history"))
    rows = [VersionRow(**v.model_dump(), live=book.live == v.n, base_url=base_url(settings, v),
                       canary_share=book.canary.share if book.canary and book.canary.version == v.n else None) for v in book.versions]
    return VersionHistory(name=book.name, live=book.live, previous=book.previous, canary=book.canary, versions=rows)


def _plain(ref: str, verb: str) -> str:
    name, which = store.split_ref(ref)
    if which is not None:
        raise InputError(f"{verb} takes the name, not a version ({ref}).", f"Run `model-serving {verb} {name}`.")
    return name


def _own_files(settings: Settings, book: store.VersionBook, version: store.Version) -> list[Path]:
    """What removing `version` deletes: its folder when no other version uses it, else its own files in it."""
    if version.out_dir is None:
        return []
    try:
        folder = confine(version.out_dir, settings.roots, must_exist=False, what="version folder")
    except InputError:
        return []  # outside the roots now: never ours to delete
    if not folder.is_dir():
        return []
    shared = any(v.out_dir == version.out_dir and v.n != version.n and v.state != "pruned" for v in book.versions)
    if not shared:
        return [folder]
    label = book.name if version.n == 1 else f"{book.name}@{version.n}"
    stems = {label, version.served_as}
    return sorted(p for p in folder.iterdir() if any(p.name.startswith(f"{s}-") or p.name.startswith(f"{s}.") for s in stems))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _kept(book: store.VersionBook, keep: int) -> dict[int, str]:
    """The versions prune keeps, and why: the live one and the canary always, then the newest up to `keep` in all."""
    why: dict[int, str] = {}
    if book.live is not None:
        why[book.live] = "live"
    if book.canary is not None:
        why[book.canary.version] = f"the canary ({book.canary.share}%)"
    for v in sorted((v for v in book.versions if v.state != "pruned"), key=lambda v: -v.n):
        if len(why) >= keep:
            break
        why.setdefault(v.n, f"one of the {keep} kept")
    return why


def prune(settings: Settings, ref: str, *, keep: int | None = None, plan: bool = False) -> PruneResult:
    """Remove the versions past the newest `keep` (never the live one or the canary); with `plan`, only say what it frees."""
    name, keep = _plain(ref, "prune"), keep or DEFAULT_KEEP
    with store.update(settings, name) as book:
        if not book.versions:
            raise InputError(f"{name!r} has no versions.", f"Deploy it first: `model-serving deploy SOURCE --name {name}`.")
        why = _kept(book, keep)
        doomed = [v for v in book.versions if v.state != "pruned" and v.n not in why]
        pruned = []
        for version in doomed:
            files = _own_files(settings, book, version)
            pruned.append(PrunedVersion(n=version.n, served_as=version.served_as, removed=[str(p) for p in files],
                                        freed_bytes=sum(_size(p) for p in files)))
            if not plan:
                _remove(settings, version, files)
        kept = [f"{name}@{n}: {reason}" for n, reason in sorted(why.items())]
        return PruneResult(name=name, planned=plan, keep=keep, pruned=pruned, kept=kept, freed_bytes=sum(p.freed_bytes for p in pruned))


def _remove(settings: Settings, version: store.Version, files: list[Path]) -> None:
    """Stop the version's engine (Ollama: delete its tag), delete its files; its row stays, marked pruned."""
    _unserve(settings, version)
    for path in files:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    version.state, version.pruned_at = "pruned", store.now()


def _unserve(settings: Settings, version: store.Version) -> None:
    if version.state != "serving":
        return
    if version.target == "ollama":
        from model_serving.serve.ollama.client import OllamaClient

        with OllamaClient(settings) as client:
            if client.exists(version.served_as):
                client.delete(version.served_as)
        return
    from model_serving.serve.engines import stop
    from model_serving.serve.gateway.llama_router import ensure_gateway
    from model_serving.serve.registry import list_models

    if any(m.name == version.served_as for m in list_models(settings)):
        stop(settings, version.served_as)
        ensure_gateway(settings)
