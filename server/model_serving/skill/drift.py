"""`skill check`: which facts changed upstream since the references were built, and which tools care.

It re-extracts the facts from the current docs cache (run `skill fetch` first to see upstream now)
and compares them, row by row, with the facts.json the references were built from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.jobs import Progress
from model_serving.skill.cache import DocsCache
from model_serving.skill.condense import Facts, extract_facts, load_facts
from model_serving.skill.sources import SourceList
from model_serving.skill.toolmap import tools_for


class FactChange(BaseModel):
    table: str
    key: str
    change: Literal["added", "removed", "changed"]
    fields: list[str] = Field(default_factory=list, description="Changed fields, for `changed`")
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    tools: list[str] = Field(description="Our MCP tools that rely on this fact")


class PageChange(BaseModel):
    source_id: str
    before_sha256: str | None
    after_sha256: str | None


class DriftReport(BaseModel):
    references_built_at: str
    up_to_date: bool = Field(description="True when no fact differs")
    pages_changed: list[PageChange]
    facts: list[FactChange]
    tools_affected: list[str]


def compare(old: Facts, new: Facts) -> DriftReport:
    changes: list[FactChange] = []
    for name in sorted(set(old.tables) | set(new.tables)):
        before = old.tables[name].by_key() if name in old.tables else {}
        after = new.tables[name].by_key() if name in new.tables else {}
        for key in sorted(set(before) | set(after)):
            tools = tools_for(name, key)
            if key not in after:
                changes.append(FactChange(table=name, key=key, change="removed", before=before[key], tools=tools))
            elif key not in before:
                changes.append(FactChange(table=name, key=key, change="added", after=after[key], tools=tools))
            elif before[key] != after[key]:
                fields = sorted(f for f in set(before[key]) | set(after[key]) if before[key].get(f) != after[key].get(f))
                changes.append(FactChange(table=name, key=key, change="changed", fields=fields, before=before[key], after=after[key], tools=tools))
    pages = [
        PageChange(source_id=s, before_sha256=old.sources[s].sha256 if s in old.sources else None, after_sha256=new.sources[s].sha256 if s in new.sources else None)
        for s in sorted(set(old.sources) | set(new.sources))
        if (old.sources.get(s) and old.sources[s].sha256) != (new.sources.get(s) and new.sources[s].sha256)
    ]
    return DriftReport(
        references_built_at=old.built_at, up_to_date=not changes, pages_changed=pages, facts=changes,
        tools_affected=sorted({t for c in changes for t in c.tools}),
    )


def check_drift(cache: DocsCache, sources: SourceList, skill: Path, progress: Progress | None = None) -> DriftReport:
    old = load_facts(skill / "references")
    if old is None:
        raise InputError(f"{skill / 'references'} has no facts.json, so there is nothing to compare against.", "Run `model-serving skill build` first.")
    return compare(old, extract_facts(cache, sources, progress))
