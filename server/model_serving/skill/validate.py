"""`skill validate`: the Agent Skills reference validator plus our own budgets and cross-checks.

Beyond `skills_ref.validate` (frontmatter keys, name rules, description length) this checks what
the reference validator leaves out: body line and byte budgets, no angle brackets in the
description, every relative link and `references/...` path resolves one level down, and every MCP
tool name the skill mentions exists on the server.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.skill.condense import load_facts
from model_serving.skill.markdown import tables

# Imported inside functions: skills_ref (the reference validator), only when a skill is validated.

MAX_BODY_LINES = 500
MAX_SKILL_BYTES = 24_000  # about 5,000 tokens, the recommended ceiling for an activated skill
MAX_REFERENCE_BYTES = 64_000
MAX_FACTS_BYTES = 256_000

# Backticked snake_case words in SKILL.md that are not tool names (fields, parameters, settings).
# Anything else in that shape is taken for a tool name and must exist on the server, so a typo in
# a tool name fails validation instead of sending an agent after a tool that does not exist.
NON_TOOL_WORDS = {
    "done_reason", "cache_prompt", "generation_config", "max_tokens", "n_predict", "num_thread", "num_gpu",
    "num_ctx", "num_predict", "keep_alive", "chat_template", "tokenizer_config", "add_bos_token", "prompt_eval_count",
    "prompt_n", "head_count_kv", "file_type", "size_vram",
}


class ValidationReport(BaseModel):
    skill_dir: str
    name: str | None
    ok: bool
    problems: list[str]
    body_lines: int
    skill_bytes: int
    tools_mentioned: list[str] = Field(default_factory=list)


def _frontmatter(text: str) -> tuple[dict[str, object], str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.DOTALL)
    if not match:
        return {}, text
    data = yaml.safe_load(match.group(1))
    return (data if isinstance(data, dict) else {}), match.group(2)


def _reference_validator(skill: Path, name: str | None, as_installed: bool) -> list[str]:
    """Run skills_ref. `as_installed` checks a skill that only gets its own folder when installed
    (the repo-root SKILL.md) by copying it into a folder of its name first."""
    from skills_ref import validate

    if as_installed and name and skill.name != name:
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / name
            staged.mkdir()
            shutil.copy2(skill / "SKILL.md", staged / "SKILL.md")
            return list(validate(staged))
    return list(validate(skill))


def relative_targets(text: str) -> list[str]:
    """Relative paths a Markdown file points at: links, and backticked references/ or assets/ paths."""
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"^[a-z]+:|^#", t)]
    targets += re.findall(r"`((?:references|assets|scripts)/[^`\s]+)`", text)
    return [t.split("#", 1)[0] for t in targets]


TOOL_COLUMNS = {"mcp tool", "detected by"}


def mentioned_tools(body: str, vocabulary: set[str]) -> list[str]:
    """Backticked snake_case words that are not known fields, plus every name in a tool column."""
    words = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", body))
    for header, rows in tables(body):
        columns = [i for i, h in enumerate(header) if h.strip().lower() in TOOL_COLUMNS]
        for row in rows:
            for i in columns:
                if i < len(row):
                    words.update(re.findall(r"`([a-z][a-z0-9_]*)`", row[i]))
    return sorted(words - vocabulary - NON_TOOL_WORDS)


def fact_vocabulary(skill: Path) -> set[str]:
    """Names that appear in the built facts (parameters, fields, keys): known not to be tools."""
    facts = load_facts(skill / "references")
    words: set[str] = set()
    if facts is None:
        return words
    for table in facts.tables.values():
        for row in table.rows:
            for value in row.values():
                if isinstance(value, str):
                    words.add(value)
                elif isinstance(value, list):
                    words.update(v for v in value if isinstance(v, str))
                    words.update(v["name"] for v in value if isinstance(v, dict) and "name" in v)
    return words


def validate_skill(skill: Path, *, tool_names: set[str] | None = None, check_links_in_references: bool = True, as_installed: bool = False) -> ValidationReport:
    skill_md = skill / "SKILL.md"
    if not skill_md.is_file():
        raise InputError(f"{skill} has no SKILL.md.", "Pass the folder that contains SKILL.md.")
    text = skill_md.read_text(encoding="utf-8")
    meta, body = _frontmatter(text)
    raw_name = meta.get("name")
    name = raw_name if isinstance(raw_name, str) else None
    problems = _reference_validator(skill, name, as_installed)
    description = str(meta.get("description", ""))
    if "<" in description or ">" in description:
        problems.append("The description contains < or >, which some agents reject.")
    if name and re.search(r"claude|anthropic", name):
        problems.append(f"The name {name!r} uses a reserved word (claude, anthropic).")
    lines = body.count("\n") + 1
    if lines >= MAX_BODY_LINES:
        problems.append(f"SKILL.md body has {lines} lines; keep it under {MAX_BODY_LINES} and move detail into references/.")
    size = len(text.encode("utf-8"))
    if size > MAX_SKILL_BYTES:
        problems.append(f"SKILL.md is {size} bytes, over the {MAX_SKILL_BYTES}-byte budget.")
    documents = [skill_md]
    if check_links_in_references and (skill / "references").is_dir():
        documents += sorted((skill / "references").glob("*.md"))
    for document in documents:
        for target in relative_targets(document.read_text(encoding="utf-8")):
            base = skill if document == skill_md or target.startswith(("references/", "assets/", "scripts/")) else document.parent
            resolved = (base / target).resolve()
            if not resolved.exists():
                problems.append(f"{document.relative_to(skill)} points at {target}, which does not exist.")
            elif document == skill_md and target.startswith("references/") and target.count("/") > 1:
                problems.append(f"SKILL.md points at {target}; keep references one level deep.")
    for reference in sorted((skill / "references").glob("*")) if (skill / "references").is_dir() else []:
        limit = MAX_FACTS_BYTES if reference.suffix == ".json" else MAX_REFERENCE_BYTES
        if reference.is_file() and reference.stat().st_size > limit:
            problems.append(f"references/{reference.name} is {reference.stat().st_size} bytes, over the {limit}-byte budget.")
    tools = mentioned_tools(body, fact_vocabulary(skill))
    if tool_names is not None:
        missing = [t for t in tools if t not in tool_names]
        if missing:
            problems.append(f"SKILL.md names MCP tools the server does not have: {', '.join(missing)}.")
    return ValidationReport(skill_dir=str(skill), name=name, ok=not problems, problems=problems, body_lines=lines, skill_bytes=size, tools_mentioned=tools)
