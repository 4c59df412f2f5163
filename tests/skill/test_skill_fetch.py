"""The docs fetcher and its cache against a loopback server: conditional requests, retries, the host
allowlist, redirects, the size limit, HTTP errors, HTML pages and hand-edited cache files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from skill_helpers import SKILL, DocsSite, serve_docs, snapshot_or_skip
from werkzeug import Request, Response

from model_serving.errors import InputError
from model_serving.skill.cache import DocsCache
from model_serving.skill.extract import modelfile_parameters, quantization_types
from model_serving.skill.fetch import cache_report, fetch_sources
from model_serving.skill.sources import SourceList, load_sources, parse_sources

UPSTREAM = "https://raw.githubusercontent.com"
MODELFILE = f"{UPSTREAM}/ollama/ollama/main/docs/modelfile.mdx"
QUANTIZE = f"{UPSTREAM}/ggml-org/llama.cpp/master/tools/quantize/README.md"


@pytest.fixture
def site(httpserver: HTTPServer) -> DocsSite:
    return serve_docs(httpserver)


def sources(*entries: dict[str, object], max_bytes: int = 2_000_000) -> SourceList:
    return parse_sources({"hosts": ["raw.githubusercontent.com"], "max_bytes": max_bytes, "sources": list(entries)})


def fetch(src: SourceList, cache: DocsCache, httpserver: HTTPServer, **kw: object):  # type: ignore[no-untyped-def]
    return fetch_sources(src, cache, mirror=httpserver.url_for("/"), backoff_s=0.001, **kw)  # type: ignore[arg-type]


def test_fetches_every_source_of_the_real_sources_file_and_records_the_manifest(site: DocsSite, httpserver: HTTPServer, tmp_path: Path) -> None:
    src = load_sources(SKILL / "sources.yaml")
    cache = DocsCache(tmp_path / "cache")
    report = fetch(src, cache, httpserver, retries=0)
    by_id = {p.source_id: p for p in report.pages}
    required = [s.id for s in src.sources if not s.optional]
    assert all(by_id[i].status == "fetched" for i in required)
    assert report.failed_required == []  # the optional vLLM page is not in the snapshot and may fail
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text(encoding="utf-8"))
    entry = manifest["entries"]["ollama-modelfile"]
    assert entry["url"] == MODELFILE  # the upstream URL, although it came through the mirror
    assert entry["etag"] and entry["last_modified"] and entry["bytes"] == (tmp_path / "cache" / entry["file"]).stat().st_size
    snapshot = (snapshot_or_skip() / "ollama/docs/modelfile.mdx").read_text(encoding="utf-8")
    assert (tmp_path / "cache" / entry["file"]).read_text(encoding="utf-8") == snapshot  # Markdown kept as is


def test_second_fetch_is_conditional_and_gets_304(site: DocsSite, httpserver: HTTPServer, tmp_path: Path) -> None:
    src = sources({"id": "ollama-modelfile", "url": MODELFILE}, {"id": "llama-quantize", "url": QUANTIZE})
    cache = DocsCache(tmp_path)
    first = fetch(src, cache, httpserver)
    before = cache.load().entries["ollama-modelfile"]
    second = fetch(src, cache, httpserver)
    assert [p.status for p in first.pages] == ["fetched", "fetched"]
    assert [p.status for p in second.pages] == ["not_modified", "not_modified"]
    assert site.not_modified == 2
    after = cache.load().entries["ollama-modelfile"]
    assert after.sha256 == before.sha256 and after.fetched_at == before.fetched_at
    forced = fetch(src, cache, httpserver, force=True)
    assert [p.status for p in forced.pages] == ["fetched", "fetched"] and site.not_modified == 2


def test_transient_errors_are_retried_with_backoff(httpserver: HTTPServer, tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(request: Request) -> Response:
        calls.append(1)
        return Response("busy", status=503) if len(calls) < 3 else Response("# Page\n\nplain markdown text here\n", content_type="text/markdown")

    httpserver.expect_request(re.compile(".*")).respond_with_handler(flaky)
    waits: list[float] = []
    report = fetch_sources(sources({"id": "p", "url": MODELFILE}), DocsCache(tmp_path), mirror=httpserver.url_for("/"), backoff_s=0.5, sleep=waits.append)
    assert report.pages[0].status == "fetched" and report.pages[0].attempts == 3
    assert waits == [0.5, 1.0]  # exponential backoff between the attempts


def test_failures_keep_the_previous_copy(site: DocsSite, httpserver: HTTPServer, tmp_path: Path) -> None:
    src = sources({"id": "ollama-modelfile", "url": MODELFILE})
    cache = DocsCache(tmp_path)
    fetch(src, cache, httpserver)
    kept = (tmp_path / "ollama-modelfile.md").read_bytes()
    httpserver.clear()
    httpserver.expect_request(re.compile(".*")).respond_with_data("server broke", status=500)
    report = fetch(src, cache, httpserver, retries=2, force=True)
    assert report.pages[0].status == "failed" and "HTTP 500" in (report.pages[0].error or "")
    assert report.failed_required == ["ollama-modelfile"]
    assert (tmp_path / "ollama-modelfile.md").read_bytes() == kept
    assert cache.load().entries["ollama-modelfile"].sha256 and cache.intact(cache.load().entries["ollama-modelfile"])


def test_404_is_a_clear_failure_without_retries(httpserver: HTTPServer, tmp_path: Path) -> None:
    hits: list[int] = []
    httpserver.expect_request(re.compile(".*")).respond_with_handler(lambda r: (hits.append(1), Response("no", status=404))[1])
    report = fetch(sources({"id": "gone", "url": f"{UPSTREAM}/x/y/main/missing.md"}), DocsCache(tmp_path), httpserver, retries=3)
    assert report.pages[0].status == "failed" and "HTTP 404" in (report.pages[0].error or "") and "sources.yaml" in (report.pages[0].error or "")
    assert len(hits) == 1
    assert not (tmp_path / "gone.md").exists()


def test_host_outside_the_allowlist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="evil.example.com.*not in the hosts list"):
        parse_sources({"hosts": ["raw.githubusercontent.com"], "sources": [{"id": "x", "url": "https://evil.example.com/page.md"}]})
    src = sources({"id": "x", "url": MODELFILE})
    with pytest.raises(InputError, match="mirror"):
        fetch_sources(src, DocsCache(tmp_path), mirror="https://mirror.example.com")


def test_redirect_to_another_host_is_refused_and_same_host_followed(httpserver: HTTPServer, tmp_path: Path) -> None:
    here = httpserver.url_for("/elsewhere.md")  # the mirror host; the redirect names the same server by another name
    other = here.replace("localhost", "127.0.0.1") if "localhost" in here else here.replace("127.0.0.1", "localhost")
    httpserver.expect_request("/ollama/ollama/main/docs/moved.md").respond_with_data("", status=302, headers={"Location": other})
    httpserver.expect_request("/ollama/ollama/main/docs/local.md").respond_with_data("", status=301, headers={"Location": "/ollama/ollama/main/docs/final.md"})
    httpserver.expect_request("/ollama/ollama/main/docs/final.md").respond_with_data("# Final\n\nthe page after one redirect\n")
    src = sources({"id": "moved", "url": f"{UPSTREAM}/ollama/ollama/main/docs/moved.md"}, {"id": "local", "url": f"{UPSTREAM}/ollama/ollama/main/docs/local.md"})
    report = fetch(src, DocsCache(tmp_path), httpserver)
    moved, local = report.pages
    assert moved.status == "failed" and "another host" in (moved.error or "")
    assert local.status == "fetched" and (tmp_path / "local.md").read_text(encoding="utf-8").startswith("# Final")


def test_size_limit_applies_with_and_without_content_length(httpserver: HTTPServer, tmp_path: Path) -> None:
    big = "x" * 5000
    httpserver.expect_request("/a/b/main/declared.md").respond_with_data(big)
    httpserver.expect_request("/a/b/main/streamed.md").respond_with_handler(lambda r: Response((big[i:i + 500] for i in range(0, 5000, 500)), content_type="text/plain"))
    src = sources({"id": "declared", "url": f"{UPSTREAM}/a/b/main/declared.md"}, {"id": "streamed", "url": f"{UPSTREAM}/a/b/main/streamed.md"}, max_bytes=1000)
    report = fetch(src, DocsCache(tmp_path), httpserver)
    assert all(p.status == "failed" and "1000-byte limit" in (p.error or "") for p in report.pages)
    assert not list(tmp_path.glob("*.md"))


def test_html_pages_become_text_with_the_same_facts(site: DocsSite, httpserver: HTTPServer, tmp_path: Path) -> None:
    """The rendered-HTML copy of a page yields the same Modelfile parameters and quantization figures."""
    src = sources(
        {"id": "ollama-modelfile", "url": f"{UPSTREAM}/rendered/ollama/ollama/main/docs/modelfile.mdx", "format": "html"},
        {"id": "llama-quantize", "url": f"{UPSTREAM}/rendered/ggml-org/llama.cpp/master/tools/quantize/README.md", "format": "html"},
    )
    cache = DocsCache(tmp_path)
    assert [p.status for p in fetch(src, cache, httpserver).pages] == ["fetched", "fetched"]
    _, text = cache.read("ollama-modelfile")
    assert "var menu" not in text and "site footer" not in text  # scripts and page chrome dropped
    snap = snapshot_or_skip()
    markdown_pages = {"ollama-modelfile": (snap / "ollama/docs/modelfile.mdx").read_text(encoding="utf-8"),
                      "llama-quantize": (snap / "llama.cpp/tools/quantize/README.md").read_text(encoding="utf-8")}
    html_pages = {i: cache.read(i)[1] for i in markdown_pages}
    assert modelfile_parameters(html_pages) == modelfile_parameters(markdown_pages)
    assert quantization_types(html_pages) == quantization_types(markdown_pages)


def test_malformed_and_empty_html(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/a/b/main/broken.html").respond_with_data(
        "<html><body><h2>Options<p>first paragraph <b>never closed<table><tr><td>num_ctx<td>int</table><ul><li>one<li>two", content_type="text/html")
    httpserver.expect_request("/a/b/main/empty.html").respond_with_data("<html><head><script>app()</script></head><body><div id=root></div></body></html>", content_type="text/html")
    httpserver.expect_request("/a/b/main/wrong.md").respond_with_data("<!DOCTYPE html><html><body>Sign in to continue</body></html>", content_type="text/html")
    src = sources(
        {"id": "broken", "url": f"{UPSTREAM}/a/b/main/broken.html", "format": "html"},
        {"id": "empty", "url": f"{UPSTREAM}/a/b/main/empty.html", "format": "html"},
        {"id": "wrong", "url": f"{UPSTREAM}/a/b/main/wrong.md"},
    )
    broken, empty, wrong = fetch(src, DocsCache(tmp_path), httpserver).pages
    assert broken.status == "fetched"
    text = (tmp_path / "broken.md").read_text(encoding="utf-8")
    assert "## Options" in text and "| num_ctx | int |" in text and "- one" in text
    assert empty.status == "failed" and "no readable text" in (empty.error or "")
    assert wrong.status == "failed" and "HTML page where Markdown was expected" in (wrong.error or "")


def test_hand_edited_cache_is_detected_reported_and_refetched(site: DocsSite, httpserver: HTTPServer, tmp_path: Path) -> None:
    src = sources({"id": "ollama-modelfile", "url": MODELFILE})
    cache = DocsCache(tmp_path)
    fetch(src, cache, httpserver)
    page = tmp_path / "ollama-modelfile.md"
    page.write_text(page.read_text(encoding="utf-8").replace("(Default: 0.8)", "(Default: 0.1)"), encoding="utf-8")
    with pytest.raises(InputError, match="edited by hand"):
        cache.read("ollama-modelfile")
    assert [p.state for p in cache_report(src, cache).pages] == ["modified"]
    before = site.not_modified
    report = fetch(src, cache, httpserver)  # no conditional headers for a tampered file, so a full download
    assert report.pages[0].status == "fetched" and site.not_modified == before
    assert "(Default: 0.8)" in cache.read("ollama-modelfile")[1]


def test_offline_report_lists_cached_missing_and_age(site: DocsSite, httpserver: HTTPServer, tmp_path: Path) -> None:
    src = sources({"id": "ollama-modelfile", "url": MODELFILE}, {"id": "llama-quantize", "url": QUANTIZE})
    cache = DocsCache(tmp_path)
    fetch(src, cache, httpserver, only=["ollama-modelfile"])
    manifest = cache.load()
    manifest.entries["ollama-modelfile"].fetched_at = "2026-01-01T00:00:00+00:00"
    cache.save(manifest)
    report = cache_report(src, cache)
    states = {p.source_id: p for p in report.pages}
    assert states["ollama-modelfile"].state == "ok" and states["ollama-modelfile"].age_days and states["ollama-modelfile"].age_days > 30
    assert states["llama-quantize"].state == "missing" and states["llama-quantize"].age_days is None
    assert report.oldest_days == states["ollama-modelfile"].age_days
