"""`skill fetch`: download the pages in sources.yaml into docs_cache/, politely and defensively.

Conditional requests (If-None-Match / If-Modified-Since) make a re-run cheap; transient failures
(connection errors, timeouts, 429, 5xx) are retried with exponential backoff; a page over the size
limit, on a host outside the allowlist, or redirected to another host is refused. Each page is
replaced atomically and only on success, so a failure leaves the previous copy in place.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Literal, TypedDict, Unpack
from urllib.parse import urljoin, urlparse

import httpx
from pydantic import BaseModel, Field

from model_serving import __version__
from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress
from model_serving.settings import is_loopback_url
from model_serving.skill.cache import CachedPageState, CacheEntry, DocsCache, now_iso
from model_serving.skill.htmltext import html_to_text, looks_like_html
from model_serving.skill.sources import Source, SourceList

RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_REDIRECTS = 5


class FetchError(ServingError):
    """One page could not be fetched; the cache keeps its previous copy."""


class PageResult(BaseModel):
    source_id: str
    url: str
    status: Literal["fetched", "not_modified", "failed"]
    bytes: int | None = None
    sha256: str | None = None
    attempts: int = 0
    error: str | None = Field(default=None, description="Cause and next step when it failed")


class FetchReport(BaseModel):
    cache_dir: str
    pages: list[PageResult]
    failed_required: list[str] = Field(description="Ids of non-optional sources that failed")


class CacheReport(BaseModel):
    cache_dir: str
    pages: list[CachedPageState]
    oldest_days: float | None


class _Response(BaseModel):
    status: int
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    content_type: str = ""


def _mirror_url(url: str, mirror: str | None) -> str:
    """The same path on a mirror that serves the upstream layout (an internal cache, a test server)."""
    if not mirror:
        return url
    parsed = urlparse(url)
    return mirror.rstrip("/") + parsed.path + (f"?{parsed.query}" if parsed.query else "")


class Fetcher:
    def __init__(
        self,
        sources: SourceList,
        cache: DocsCache,
        *,
        mirror: str | None = None,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sources = sources
        self.cache = cache
        self.mirror = mirror.rstrip("/") if mirror else None
        if self.mirror:
            host = urlparse(self.mirror).hostname or ""
            if not (sources.host_allowed(host) or is_loopback_url(self.mirror)):
                raise InputError(f"The mirror {mirror} is neither a loopback address nor in the hosts list of sources.yaml.", "Add its host to `hosts:` in sources.yaml, or use a loopback mirror.")
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.client = httpx.Client(
            timeout=timeout_s, follow_redirects=False, transport=transport,
            headers={"User-Agent": f"model-serving/{__version__} (skill docs fetcher)", "Accept-Encoding": "gzip"},
        )

    def close(self) -> None:
        self.client.close()

    def _allowed(self, url: str) -> bool:
        host = urlparse(url).hostname or ""
        return self.sources.host_allowed(host) or (self.mirror is not None and url.startswith(self.mirror + "/"))

    def _get_once(self, url: str, headers: dict[str, str]) -> _Response:
        """One GET, following same-host redirects only, reading at most max_bytes."""
        limit = self.sources.max_bytes
        for _ in range(MAX_REDIRECTS + 1):
            if not self._allowed(url):
                raise FetchError(f"{url} is on a host that is not in the sources allowlist.", "Add the host to `hosts:` in sources.yaml if it is trustworthy.")
            with self.client.stream("GET", url, headers=headers) as response:
                if response.has_redirect_location:
                    target = urljoin(url, response.headers["location"])
                    old, new = urlparse(url), urlparse(target)
                    if (new.hostname, new.port) != (old.hostname, old.port) or (old.scheme == "https" and new.scheme != "https"):
                        raise FetchError(f"{url} redirects to {target}, another host; redirects are followed only within the same host.", "Update the URL in sources.yaml to the page's new home after checking it.")
                    url = target
                    continue
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise FetchError(f"{url} is {int(declared)} bytes, over the {limit}-byte limit.", "Raise max_bytes in sources.yaml if the page really is that large.")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise FetchError(f"{url} is over the {limit}-byte limit.", "Raise max_bytes in sources.yaml if the page really is that large.")
                return _Response(
                    status=response.status_code, body=bytes(body), etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"), content_type=response.headers.get("content-type", ""),
                )
        raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times.", "Check the URL in sources.yaml.")

    def _get(self, url: str, headers: dict[str, str], progress: Progress) -> tuple[_Response, int]:
        attempt = 0
        while True:
            attempt += 1
            progress.check()
            try:
                response = self._get_once(url, headers)
                if response.status not in RETRY_STATUS or attempt > self.retries:
                    return response, attempt
            except httpx.TransportError as exc:
                if attempt > self.retries:
                    raise FetchError(f"{url} could not be reached after {attempt} attempts ({exc.__class__.__name__}).", "Check the network, or run `model-serving skill fetch --offline` to see what is cached.") from None
            self.sleep(self.backoff_s * 2 ** (attempt - 1))

    def fetch_one(self, source: Source, manifest_entry: CacheEntry | None, *, force: bool, progress: Progress) -> tuple[PageResult, CacheEntry | None, str | None]:
        url = _mirror_url(source.url, self.mirror)
        headers: dict[str, str] = {}
        # A hand-edited cache file must be replaced, so it gets no conditional headers.
        if manifest_entry is not None and not force and self.cache.intact(manifest_entry):
            if manifest_entry.etag:
                headers["If-None-Match"] = manifest_entry.etag
            if manifest_entry.last_modified:
                headers["If-Modified-Since"] = manifest_entry.last_modified
        response, attempts = self._get(url, headers, progress)
        if response.status == 304 and headers:
            assert manifest_entry is not None
            entry = manifest_entry.model_copy(update={"checked_at": now_iso()})
            return PageResult(source_id=source.id, url=source.url, status="not_modified", bytes=entry.bytes, sha256=entry.sha256, attempts=attempts), entry, None
        if response.status != 200:
            raise FetchError(f"{url} answered HTTP {response.status}{' after retries' if response.status in RETRY_STATUS else ''}.", "Check that the page still exists upstream and update sources.yaml if it moved.")
        try:
            body = response.body.decode("utf-8")
        except UnicodeDecodeError:
            raise FetchError(f"{url} is not UTF-8 text.", "Check that the URL points at a documentation page.") from None
        if source.format == "html":
            try:
                text = html_to_text(body, url=url)
            except InputError as exc:
                raise FetchError(exc.cause, exc.next_step) from None
        else:
            if "html" in response.content_type or looks_like_html(body):
                raise FetchError(f"{url} returned an HTML page where Markdown was expected.", "Use the raw Markdown URL, or set `format: html` for this source.")
            text = body if body.endswith("\n") else body + "\n"
        data = text.encode("utf-8")
        stamp = now_iso()
        entry = CacheEntry(
            source_id=source.id, url=source.url, file=f"{source.id}.md", format=source.format, fetched_at=stamp, checked_at=stamp,
            etag=response.etag, last_modified=response.last_modified, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
        )
        return PageResult(source_id=source.id, url=source.url, status="fetched", bytes=len(data), sha256=entry.sha256, attempts=attempts), entry, text

    def fetch_all(self, *, only: list[str] | None = None, force: bool = False, progress: Progress | None = None) -> FetchReport:
        progress = progress or Progress()
        manifest = self.cache.load()
        chosen = [self.sources.get(i) for i in only] if only else self.sources.sources
        results: list[PageResult] = []
        for index, source in enumerate(chosen):
            progress.update(index / max(len(chosen), 1), f"fetching {source.id}")
            try:
                result, entry, text = self.fetch_one(source, manifest.entries.get(source.id), force=force, progress=progress)
            except FetchError as exc:
                results.append(PageResult(source_id=source.id, url=source.url, status="failed", error=str(exc)))
                continue
            if entry is not None:
                if text is not None:
                    self.cache.store(manifest, entry, text)
                else:
                    manifest.entries[source.id] = entry
                    self.cache.save(manifest)
            results.append(result)
        progress.update(1.0, "done")
        failed = [r.source_id for r in results if r.status == "failed" and not self.sources.get(r.source_id).optional]
        return FetchReport(cache_dir=str(self.cache.dir), pages=results, failed_required=failed)


class FetchOptions(TypedDict, total=False):
    """The Fetcher's retry and transport options that fetch_sources passes through."""

    retries: int
    backoff_s: float
    timeout_s: float
    transport: httpx.BaseTransport | None
    sleep: Callable[[float], None]


def fetch_sources(sources: SourceList, cache: DocsCache, *, mirror: str | None = None, only: list[str] | None = None, force: bool = False, progress: Progress | None = None, **options: Unpack[FetchOptions]) -> FetchReport:
    fetcher = Fetcher(sources, cache, mirror=mirror, **options)
    try:
        return fetcher.fetch_all(only=only, force=force, progress=progress)
    finally:
        fetcher.close()


def cache_report(sources: SourceList, cache: DocsCache) -> CacheReport:
    """Offline view: which pages are cached, whether they are intact, and how old they are."""
    pages = cache.report([s.id for s in sources.sources])
    ages = [p.age_days for p in pages if p.age_days is not None]
    return CacheReport(cache_dir=str(cache.dir), pages=pages, oldest_days=max(ages) if ages else None)
