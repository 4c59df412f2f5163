"""The list of upstream pages (skills/model-serving/sources.yaml) and its host allowlist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, Field, ValidationError

from model_serving.errors import InputError

_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class Source(BaseModel):
    id: str = Field(description="Short name; also the cache file name")
    url: str
    format: Literal["markdown", "html"] = "markdown"
    topics: list[str] = Field(default_factory=list)
    optional: bool = Field(default=False, description="A failure to fetch it does not fail the run")

    @property
    def host(self) -> str:
        return (urlparse(self.url).hostname or "").lower()


class SourceList(BaseModel):
    hosts: list[str]
    max_bytes: int = Field(default=2_000_000, gt=0)
    sources: list[Source]

    def get(self, source_id: str) -> Source:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise InputError(f"No source has the id {source_id!r}.", f"Use one of: {', '.join(s.id for s in self.sources)}.")

    def host_allowed(self, host: str) -> bool:
        return host.lower() in {h.lower() for h in self.hosts}


def parse_sources(data: object, where: str = "sources file") -> SourceList:
    try:
        sources = SourceList.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"The {where} is malformed: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}.", "Fix it; see skills/model-serving/sources.yaml for the format.") from None
    seen: set[str] = set()
    for source in sources.sources:
        if not _ID.match(source.id) or source.id in seen:
            raise InputError(f"Source id {source.id!r} in the {where} is repeated or not lowercase-with-dashes.", "Give every source a distinct id such as ollama-api.")
        seen.add(source.id)
        parsed = urlparse(source.url)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise InputError(f"Source {source.id} has the URL {source.url!r}, which is not http(s).", "Use the page's https URL.")
        if not sources.host_allowed(source.host):
            raise InputError(
                f"Source {source.id} is on host {source.host}, which is not in the hosts list of the {where}.",
                "Add the host to `hosts:` if it is trustworthy, or remove the source.",
            )
    return sources


def load_sources(path: Path) -> SourceList:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"The sources file {path} does not exist.", "Pass --sources with the path of sources.yaml.") from None
    except yaml.YAMLError as exc:
        raise InputError(f"The sources file {path} is not valid YAML: {exc}.", "Fix the YAML syntax.") from None
    return parse_sources(data, where=f"sources file {path}")
