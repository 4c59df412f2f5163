"""docs_cache/: one text file per source plus manifest.json saying where each came from.

The manifest records the upstream URL, when it was fetched, the validators the server gave
(ETag, Last-Modified) and the sha256 of the stored text, so that a hand-edited file is noticed
instead of being condensed into the skill.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.util.paths import sha256_file, write_bytes_atomic

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class CacheEntry(BaseModel):
    source_id: str
    url: str = Field(description="Upstream URL (also when fetched through a mirror)")
    file: str = Field(description="File name inside the cache folder")
    format: Literal["markdown", "html"]
    fetched_at: str = Field(description="When the stored text was last downloaded (UTC, ISO 8601)")
    checked_at: str = Field(description="When upstream last confirmed it (200 or 304)")
    etag: str | None = None
    last_modified: str | None = None
    sha256: str = Field(description="sha256 of the stored text")
    bytes: int


class Manifest(BaseModel):
    version: int = MANIFEST_VERSION
    entries: dict[str, CacheEntry] = Field(default_factory=dict, description="By source id")


class CachedPageState(BaseModel):
    source_id: str
    url: str | None = None
    state: Literal["ok", "modified", "missing"] = Field(description="modified: the file no longer matches its sha256 (edited by hand)")
    fetched_at: str | None = None
    age_days: float | None = None
    bytes: int | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def age_days(stamp: str, now: datetime | None = None) -> float:
    then = datetime.fromisoformat(stamp)
    return round(((now or datetime.now(UTC)) - then).total_seconds() / 86400, 2)


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target then rename, so a reader never sees half a file (and `clean` knows a killed writer's partial)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data, mode=0o644)  # mkstemp's 0600 would make the cache unreadable to other users


class DocsCache:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    def load(self) -> Manifest:
        if not self.manifest_path.exists():
            return Manifest()
        try:
            manifest = Manifest.model_validate_json(self.manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{self.manifest_path} is not a valid cache manifest ({exc.__class__.__name__}).", "Delete the docs cache folder's manifest.json and run `model-serving skill fetch` again.") from None
        if manifest.version != MANIFEST_VERSION:
            raise InputError(f"{self.manifest_path} has manifest version {manifest.version}, expected {MANIFEST_VERSION}.", "Run `model-serving skill fetch --force` to rebuild the cache.")
        return manifest

    def save(self, manifest: Manifest) -> None:
        write_atomic(self.manifest_path, (json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode())

    def path_of(self, entry: CacheEntry) -> Path:
        return self.dir / entry.file

    def intact(self, entry: CacheEntry) -> bool:
        path = self.path_of(entry)
        return path.is_file() and sha256_file(path) == entry.sha256

    def store(self, manifest: Manifest, entry: CacheEntry, text: str) -> None:
        """Replace one page and its manifest entry; the others are untouched."""
        write_atomic(self.dir / entry.file, text.encode("utf-8"))
        manifest.entries[entry.source_id] = entry
        self.save(manifest)

    def read(self, source_id: str, manifest: Manifest | None = None) -> tuple[CacheEntry, str]:
        """The cached text of a source, refusing a missing or hand-edited file."""
        manifest = manifest or self.load()
        entry = manifest.entries.get(source_id)
        if entry is None or not self.path_of(entry).is_file():
            raise InputError(f"The page {source_id} is not in the docs cache {self.dir}.", "Run `model-serving skill fetch` first.")
        if not self.intact(entry):
            raise InputError(
                f"The cached page {self.path_of(entry)} does not match the sha256 in the manifest: it was edited by hand.",
                "Run `model-serving skill fetch --force` to download it again; edit the skill, not the cache.",
            )
        return entry, self.path_of(entry).read_text(encoding="utf-8")

    def report(self, source_ids: list[str], now: datetime | None = None) -> list[CachedPageState]:
        manifest = self.load()
        states = []
        for source_id in source_ids:
            entry = manifest.entries.get(source_id)
            if entry is None or not self.path_of(entry).is_file():
                states.append(CachedPageState(source_id=source_id, state="missing", url=entry.url if entry else None))
                continue
            states.append(CachedPageState(
                source_id=source_id, url=entry.url, state="ok" if self.intact(entry) else "modified",
                fetched_at=entry.fetched_at, age_days=age_days(entry.fetched_at, now), bytes=entry.bytes,
            ))
        return states
