"""HTML pages to Markdown-like text, so one condenser reads both kinds of source.

Headings become `#` lines, lists `- ` items, tables pipe tables and <pre> blocks fences; navigation,
scripts and styles are dropped. html.parser is lenient, so unclosed tags still give text.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag

from model_serving.errors import InputError

_DROP = ("script", "style", "nav", "header", "footer", "noscript", "svg", "form", "button")
_BLOCKS = {"p", "div", "section", "article", "main", "blockquote", "dl", "dd", "dt", "figure", "details", "summary", "body", "html"}


def _inline(node: Tag | NavigableString) -> str:
    if isinstance(node, NavigableString):
        return str(node)
    if node.name == "code":
        return f"`{node.get_text()}`"
    if node.name == "br":
        return " "
    return "".join(_inline(child) for child in node.children)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _table(table: Tag) -> list[str]:
    rows = []
    for tr in table.find_all("tr"):
        cells = [_clean(_inline(cell)).replace("|", "\\|") for cell in tr.find_all(["th", "td"])]
        if cells:
            rows.append(cells)
    if not rows:
        return []
    width = max(len(r) for r in rows)
    lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
    lines.insert(1, "|" + " --- |" * width)
    return lines


def _walk(node: Tag, out: list[str], depth: int = 0) -> None:
    for child in node.children:
        if isinstance(child, NavigableString):
            text = _clean(str(child))
            if text and child.__class__ is NavigableString:
                out.append(text)
            continue
        if not isinstance(child, Tag) or child.name in _DROP:
            continue
        name = child.name
        if re.fullmatch(r"h[1-6]", name):
            out += ["", "#" * int(name[1]) + " " + _clean(_inline(child)), ""]
        elif name == "pre":
            out += ["", "```", child.get_text().rstrip("\n"), "```", ""]
        elif name == "table":
            out += ["", *_table(child), ""]
        elif name in ("ul", "ol"):
            for item in child.find_all("li", recursive=False):
                nested = item.find(["ul", "ol"])
                if nested is not None:
                    nested.extract()
                out.append("  " * depth + "- " + _clean(_inline(item)))
                if nested is not None:
                    wrapper = BeautifulSoup("", "html.parser").new_tag("div")
                    wrapper.append(nested)
                    _walk(wrapper, out, depth + 1)
            out.append("")
        elif name in _BLOCKS:
            if any(isinstance(c, Tag) and (c.name in _BLOCKS or c.name in ("ul", "ol", "table", "pre") or re.fullmatch(r"h[1-6]", c.name)) for c in child.children):
                _walk(child, out, depth)
            else:
                text = _clean(_inline(child))
                if text:
                    out += [text, ""]
        else:
            text = _clean(_inline(child))
            if text:
                out.append(text)


def html_to_text(html: str, *, url: str = "the page") -> str:
    """Markdown-like text of an HTML page; refuses a page with no readable text."""
    soup = BeautifulSoup(html, "html.parser")
    root = soup.find("main") or soup.find("article") or soup.body or soup
    out: list[str] = []
    _walk(root, out)  # type: ignore[arg-type]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
    if len(text.split()) < 5:
        raise InputError(f"{url} returned HTML with no readable text.", "Check the URL in sources.yaml; the page may have moved or need JavaScript.")
    return text + "\n"


def looks_like_html(body: str) -> bool:
    head = body.lstrip()[:200].lower()
    return head.startswith("<!doctype html") or head.startswith("<html")
