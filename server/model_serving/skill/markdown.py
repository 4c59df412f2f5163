"""Small readers for the Markdown shapes upstream docs use: headed sections, pipe tables, fenced code."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass
class Section:
    level: int
    title: str
    body: str


def strip_fences(text: str) -> str:
    """Blank out fenced code blocks (keeping line count) so '# comment' lines are not headings."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def sections(text: str, level: int) -> list[Section]:
    """Split at headings of exactly `level`; each body runs to the next heading of that level or higher."""
    lines = text.splitlines()
    plain = strip_fences(text).splitlines()
    found: list[Section] = []
    current: tuple[str, int] | None = None
    for index, line in enumerate(plain):
        match = _HEADING.match(line)
        if match and len(match.group(1)) <= level:
            if current is not None:
                found.append(Section(level, current[0], "\n".join(lines[current[1]:index])))
            current = (match.group(2), index + 1) if len(match.group(1)) == level else None
    if current is not None:
        found.append(Section(level, current[0], "\n".join(lines[current[1]:])))
    return found


def section(text: str, title_pattern: str, level: int) -> Section | None:
    for found in sections(text, level):
        if re.search(title_pattern, found.title, re.IGNORECASE):
            return found
    return None


def split_row(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    cells = re.split(r"(?<!\\)\|", inner)
    return [cell.strip().replace("\\|", "|") for cell in cells]


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every pipe table: (header cells, body rows)."""
    found = []
    lines = strip_fences(text).splitlines()
    index = 0
    while index < len(lines) - 1:
        line, rule = lines[index], lines[index + 1]
        if line.strip().startswith("|") and re.fullmatch(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*", rule):
            header = split_row(line)
            rows = []
            index += 2
            while index < len(lines) and lines[index].strip().startswith("|"):
                rows.append(split_row(lines[index]))
                index += 1
            found.append((header, rows))
        else:
            index += 1
    return found


def code_blocks(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\s*```[^\n]*\n(.*?)^\s*```", text, re.MULTILINE | re.DOTALL)]


def unmark(cell: str) -> str:
    """Cell text without links, emphasis, backticks or HTML breaks."""
    cell = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell)
    cell = re.sub(r"<br\s*/?>", " ", cell)
    cell = cell.replace("`", "").replace("**", "").replace("\\*", "*").replace("\\_", "_")
    return re.sub(r"\s+", " ", cell).strip()
