"""HTML pages to Markdown-like text, so one condenser reads both kinds of source.

Headings become `#` lines, lists `- ` items, tables pipe tables and <pre> blocks fences; navigation,
scripts and styles are dropped. html.parser does not repair structure: an unclosed <h2>, <li> or
<td> swallows what follows it, so the walker splits such elements at their first block-level child
and treats nested cells and items as siblings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bs4 import BeautifulSoup, NavigableString, PageElement, Tag

from model_serving.errors import InputError

_DROP = {"script", "style", "nav", "header", "footer", "noscript", "svg", "form", "button", "head", "title"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_CONTAINERS = {"p", "div", "section", "article", "main", "blockquote", "dl", "dd", "dt", "figure", "details", "summary", "body", "html"}
_BLOCK = _CONTAINERS | _HEADINGS | {"ul", "ol", "li", "table", "tr", "td", "th", "pre"}


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _is_text(node: PageElement) -> bool:
    return type(node) is NavigableString  # not comments, doctypes or CDATA


def _inline(node: PageElement, stop: set[str] = _BLOCK) -> str:
    """Text of inline content, not descending into block-level children."""
    if _is_text(node):
        return str(node)
    if not isinstance(node, Tag) or node.name in _DROP or node.name in stop:
        return ""
    if node.name == "code":
        return f"`{node.get_text()}`"
    if node.name == "br":
        return " "
    return "".join(_inline(child, stop) for child in node.children)


def _own_text(tag: Tag) -> str:
    return _clean("".join(_inline(child) for child in tag.children))


def _blocks_inside(tag: Tag) -> list[Tag]:
    """Block-level elements under `tag` that an inline reading would skip (the swallowed rest)."""
    found: list[Tag] = []
    for child in tag.children:
        if isinstance(child, Tag) and child.name not in _DROP:
            if child.name in _BLOCK:
                found.append(child)
            else:
                found += _blocks_inside(child)
    return found


def _cells(row: Tag) -> list[str]:
    inline = _BLOCK - {"p", "div"}  # a cell's own paragraphs are its text; a nested cell is not
    return [_clean("".join(_inline(c, inline) for c in cell.children)).replace("|", "\\|") for cell in row.find_all(["th", "td"])]


def _table(table: Tag) -> list[str]:
    rows = [cells for tr in table.find_all("tr") if (cells := _cells(tr))]
    if not rows:
        return []
    width = max(len(r) for r in rows)
    lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
    lines.insert(1, "|" + " --- |" * width)
    return lines


def _list(items: Iterable[Tag], out: list[str], depth: int) -> None:
    for item in items:
        text = _own_text(item)
        if text:
            out.append("  " * depth + "- " + text)
        for inner in _blocks_inside(item):
            if inner.name == "li":  # an unclosed <li> holds the next items
                _list([inner], out, depth)
            elif inner.name in ("ul", "ol"):
                _list(inner.find_all("li", recursive=False), out, depth + 1)
            else:
                _walk([inner], out, depth + 1)


def _walk(nodes: Iterable[PageElement], out: list[str], depth: int = 0) -> None:
    pending: list[str] = []  # inline runs between blocks form one paragraph

    def flush() -> None:
        text = _clean("".join(pending))
        pending.clear()
        if text:
            out.extend([text, ""])

    for node in nodes:
        if _is_text(node):
            pending.append(str(node))
            continue
        if not isinstance(node, Tag) or node.name in _DROP:
            continue
        name = node.name
        if name not in _BLOCK:
            inner = _blocks_inside(node)
            pending.append(_inline(node))
            if inner:
                flush()
                _walk(inner, out, depth)
            continue
        flush()
        if name in _HEADINGS:
            out.extend(["", "#" * int(name[1]) + " " + _own_text(node), ""])
            _walk(_blocks_inside(node), out, depth)
        elif name == "pre":
            out.extend(["```", node.get_text().rstrip("\n"), "```", ""])
        elif name == "table":
            out.extend([*_table(node), ""])
        elif name in ("ul", "ol"):
            _list(node.find_all("li", recursive=False), out, depth)
            out.append("")
        elif name == "li":
            _list([node], out, depth)
        else:
            _walk(node.children, out, depth)
    flush()


def html_to_text(html: str, *, url: str = "the page") -> str:
    """Markdown-like text of an HTML page; refuses a page with no readable text."""
    soup = BeautifulSoup(html, "html.parser")
    root = soup.find("main") or soup.find("article") or soup.body or soup
    out: list[str] = []
    _walk(root.children if isinstance(root, Tag) else [root], out)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
    if len(text.split()) < 5:
        raise InputError(f"{url} returned HTML with no readable text.", "Check the URL in sources.yaml; the page may have moved or need JavaScript.")
    return text + "\n"


def looks_like_html(body: str) -> bool:
    head = body.lstrip()[:200].lower()
    return head.startswith("<!doctype html") or head.startswith("<html")
