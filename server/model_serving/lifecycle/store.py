"""The version store: every deploy of a name is a version, and one file per name says which is live.

`<home>/state/versions/<name>.json` (the name encoded like the engine registry's record names) holds, per name, the
live version, the stack `previous` that rollback pops, the canary ({version, share} or null) and every version ever
deployed: what it was built from, where it is served, how it measured, and when it was live. A pruned version keeps its
row (state `pruned`), so `history` still tells what was served when.

Every change is a read-modify-write under an flock on `<name>.lock`, written through a partial and a rename: two
deploys, or a promote beside a deploy, never lose each other's change, and a reader never sees half a file.

Version 1 keeps the plain name on every engine. Version N >= 2 is served beside it as `NAME@N` on the embedded
engine (an engine record and a gateway section of its own); Ollama cannot hold '@', so there a version is the tag
`NAME:vN` (`M:T-vN` when NAME has a tag) and the public NAME is a copy of the live version's tag.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model_serving.errors import InputError
from model_serving.requests import MODEL_NAME_PATTERN, DeployTarget
from model_serving.settings import Settings
from model_serving.util import claim
from model_serving.util.paths import write_text_atomic

State = Literal["serving", "stopped", "pruned"]
_REF = re.compile(r"^(?P<name>.+?)(@(?P<version>[1-9][0-9]{0,5}|live|previous))?$")
_NAME = re.compile(MODEL_NAME_PATTERN)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LivePeriod(BaseModel):
    """When a version answered the public name: from `from`, until `until` (None: it still does)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    since: str = Field(alias="from")
    until: str | None = None


class Serving(BaseModel):
    """What a version is served with beside its source; a deploy of the same source with equal settings reuses the version."""

    model_config = ConfigDict(frozen=True)
    quant: str | None = Field(None, description="The type quantized to; None: served as built (F16 export, a GGUF as it is, vLLM's dtype)")
    format: str | None = None
    calibration_sha256: str | None = None
    chat_template_sha256: str | None = None
    completions: bool = False
    ctx_size: int
    parallel: int


class Version(BaseModel):
    n: int
    served_as: str = Field(description="The engine record (embedded: NAME or NAME@N) or the Ollama tag that serves this version")
    target: DeployTarget
    source: str = Field(description="What was deployed: a path, a Hub id, or the default model")
    source_sha256: str | None = None
    quant: str | None = None
    artifact: str | None = Field(None, description="The served file (a GGUF; vLLM: the checkpoint folder)")
    artifact_sha256: str | None = None
    manifest: str | None = None
    out_dir: str | None = None
    created_at: str
    answer: str | None = Field(None, description="The deploy's probe answer")
    quality: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None
    live_periods: list[LivePeriod] = Field(default_factory=list)
    state: State = "serving"
    pruned_at: str | None = None
    serving: Serving | None = Field(None, description="The settings it was served with; None (records written before): never reused")


class Canary(BaseModel):
    version: int
    share: int = Field(description="Percent of the public name's requests the canary version gets")


class VersionBook(BaseModel):
    """One name's versions: which is live, the rollback stack, the canary, and every version deployed."""

    name: str
    live: int | None = None
    previous: list[int] = Field(default_factory=list, description="Rollback stack: the last entry is live again after a rollback")
    canary: Canary | None = None
    versions: list[Version] = Field(default_factory=list)

    def get(self, n: int) -> Version:
        for v in self.versions:
            if v.n == n:
                return v
        known = ", ".join(f"@{v.n}" for v in self.versions) or "none"
        raise InputError(f"{self.name} has no version {n} (versions: {known}).", f"See them with `model-serving history {self.name}`.")

    def next_n(self) -> int:
        return max((v.n for v in self.versions), default=0) + 1

    def go_live(self, n: int, *, push: bool = True) -> None:
        """Make version n live: the old live version's period ends and (unless rolled back from) it goes on the rollback stack."""
        stamp = now()
        if self.live is not None and self.live != n:
            old = self.get(self.live)
            for period in old.live_periods:
                period.until = period.until or stamp
            if push:
                self.previous = [p for p in self.previous if p != self.live] + [self.live]
        self.previous = [p for p in self.previous if p != n]
        self.live = n
        new = self.get(n)
        if not new.live_periods or new.live_periods[-1].until is not None:
            new.live_periods.append(LivePeriod(since=stamp))


def split_ref(ref: str) -> tuple[str, str | None]:
    """`NAME@N` -> (NAME, "N"); `NAME@live` -> (NAME, "live"); `NAME` -> (NAME, None)."""
    found = _REF.match(ref)
    if found is None or not _NAME.match(found["name"]):
        raise InputError(f"{ref!r} is not a model name or a version of one.", "Write NAME, NAME@N (a version), NAME@live or NAME@previous.")
    return found["name"], found["version"]


def directory(settings: Settings) -> Path:
    path = settings.state_dir / "versions"
    path.mkdir(parents=True, exist_ok=True)
    return path


def path(settings: Settings, name: str) -> Path:
    return directory(settings) / f"{name.replace(':', '%3A')}.json"  # the registry's encoding: `m:1` and `m_1` stay apart


def load(settings: Settings, name: str) -> VersionBook | None:
    """The name's versions, or None when it was never deployed as a version."""
    try:
        return VersionBook.model_validate_json(path(settings, name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InputError(f"The version record {path(settings, name)} is unreadable ({str(exc).splitlines()[0]}).",
                         "Move it aside (its versions are then unknown to history, promote and rollback) and deploy again.") from None


def require(settings: Settings, name: str) -> VersionBook:
    book = load(settings, name)
    if book is None or not book.versions:
        raise InputError(f"{name!r} has no versions: it was never deployed under that name.",
                         f"Deploy it (`model-serving deploy SOURCE --name {name}`); each later deploy of the name becomes its next version.")
    return book


@contextlib.contextmanager
def update(settings: Settings, name: str) -> Iterator[VersionBook]:
    """The name's book for a change, under its lock; written whole when the block ends without an error."""
    lock = directory(settings) / f"{name.replace(':', '%3A')}.lock"
    with claim.hold(lock, wait=True):
        book = load(settings, name) or VersionBook(name=name)
        yield book
        write_text_atomic(path(settings, name), book.model_dump_json(indent=2))


def served_as(name: str, n: int, target: str) -> str:
    """The engine record or Ollama tag that serves version n of `name`."""
    if target == "ollama":
        base, colon, tag = name.rpartition(":")
        return f"{base}:{tag}-v{n}" if colon else f"{name}:v{n}"
    return name if n == 1 else f"{name}@{n}"


def same_version(book: VersionBook | None, target: str, serving: Serving, source_sha256: Callable[[Version], str | None]) -> Version | None:
    """The newest version (not pruned) on `target` served with these settings from the same source bytes, or None.

    `source_sha256(version)` is this deploy's source hash as that version would have recorded it (the default model's
    checkpoint is built in the version's folder). A version without a recorded source hash or settings never matches:
    what it serves is unknown.
    """
    for v in reversed(book.versions if book is not None else []):
        if v.state == "pruned" or v.target != target or v.serving != serving or v.source_sha256 is None or v.out_dir is None:
            continue
        if source_sha256(v) == v.source_sha256:
            return v
    return None


def record_deploy(settings: Settings, name: str, version: Version, *, live: bool) -> VersionBook:
    """Add (or, for a re-deploy of the same version number, replace) a version; `live` makes it live at once."""
    with update(settings, name) as book:
        book.versions = [v for v in book.versions if v.n != version.n] + [version]
        book.versions.sort(key=lambda v: v.n)
        if live or book.live is None:
            book.go_live(version.n)
        return book
