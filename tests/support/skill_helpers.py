"""A loopback docs server for the skill tests: the upstream pages in ../shared/docs-snapshot served
under their upstream paths (/owner/repo/<branch>/path), Markdown as is or rendered to HTML under
/rendered/..., with ETag / Last-Modified validators and 304 answers like a real static host."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO.parent / "shared" / "docs-snapshot"
SKILL = REPO / "skills" / "model-serving"
LAST_MODIFIED = "Fri, 21 Aug 2026 10:00:00 GMT"


def snapshot_or_skip() -> Path:
    if not (SNAPSHOT / "MANIFEST.tsv").is_file():
        pytest.skip(f"the upstream docs snapshot is not at {SNAPSHOT} (it sits beside the checkout in ../shared)")
    return SNAPSHOT


def snapshot_files() -> dict[tuple[str, str], Path]:
    """(owner/repo, path in repo) -> snapshot file, from MANIFEST.tsv."""
    files = {}
    with (SNAPSHOT / "MANIFEST.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            files[(row["repo"], row["path"])] = SNAPSHOT / row["repo"].split("/")[1] / row["path"]
    return files


def render_html(markdown: str, title: str) -> str:
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title><script>var menu = 1;</script><style>p {{}}</style></head>"
        f"<body><nav><ul><li>Home</li><li>Docs</li></ul></nav><main>{body}</main><footer>site footer</footer></body></html>"
    )


class DocsSite:
    """Request handler with counters, so tests can see conditional requests and retries happen."""

    def __init__(self) -> None:
        self.files = snapshot_files()
        self.hits: dict[str, int] = {}
        self.not_modified = 0

    def page(self, path: str) -> tuple[Path, bool] | None:
        rendered = path.startswith("/rendered/")
        match = re.match(r"^/([^/]+/[^/]+)/[^/]+/(.+)$", path.removeprefix("/rendered"))
        if not match:
            return None
        file = self.files.get((match.group(1), match.group(2)))
        return (file, rendered) if file is not None else None

    def __call__(self, request: Request) -> Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        found = self.page(request.path)
        if found is None:
            return Response("not found", status=404)
        file, rendered = found
        text = file.read_text(encoding="utf-8")
        body = render_html(text, file.name) if rendered else text
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return Response(status=304, headers={"ETag": etag})
        kind = "text/html; charset=utf-8" if rendered else "text/plain; charset=utf-8"
        return Response(body, status=200, headers={"ETag": etag, "Last-Modified": LAST_MODIFIED, "Content-Type": kind})


def serve_docs(httpserver: HTTPServer) -> DocsSite:
    """Serve the snapshot on the test's loopback server (skipping when the snapshot is absent)."""
    snapshot_or_skip()
    docs = DocsSite()
    httpserver.expect_request(re.compile(".*")).respond_with_handler(docs)
    return docs
