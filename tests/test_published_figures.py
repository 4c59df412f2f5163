"""Published figures come from results, and only from results.

docs/benchmarks.md and the README's generated blocks must equal what benchmarks/publish.py makes of
benchmarks/results/*.json today, and no other page may carry a figure that looks measured (a rate, a
latency, a duration, a speed-up, a share): those belong on the generated page, where each cites its file.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A number followed by a unit that only a measurement would give, or a ratio written as 1.2x.
MEASURED = re.compile(
    r"(?<![\w.\-])\d[\d,]*(?:\.\d+)?(?:\s*(?:-|–|to)\s*\d[\d,]*(?:\.\d+)?)?\s*"
    r"(?:req/s|requests/s|tok/s|tokens/s|ms\b|s\b|seconds\b|min\b|minutes\b|x\b|%|times\b|GB\b|GiB\b|MB\b|MiB\b)",
)
# Numbers that are settings, limits or definitions rather than measurements: each one named, with where it is.
ALLOWED = {
    "200 ms": "the default TTFT target",
    "500 ms": "the default e2e target",
    "8 GB": "the default memory target",
    "10 req/s": "the default throughput target",
    "10 requests/s": "the default throughput target",
    "95%": "the confidence of the bootstrap intervals",
    "2 s": "MCP jobs answer within about 2 s; the router's health-check interval; the bundle's TTFT alert threshold",
    "5 s": "agent_deploy's blocking limit",
    "30 s": "job_status's long-poll default; idle keep-alive connections",
    "300 s": "the gateway's default keep-alive",
    "4 MiB": "the calibration text limit",
    "50 GB": "the Hub's per-file limit",
    "1 GiB": "plan-production's CUDA reserve",
    "500 MB": "plan-production's load assumption (500 MB/s from the cache volume)",
    "1 s": "metrics' two scrapes 1 s apart",
    "180 s": "plan-production's engine start assumption",
    "10%": "the knee rule and the token-count disagreement threshold",
    "15%": "the decode-speed disagreement threshold",
    "30%": "the roofline's compute-bound threshold",
    "60 s": "vllm-router's default health-check interval",
    "1.02x": "the overhead target against the bare tools",
}


def _publisher():
    spec = importlib.util.spec_from_file_location("publish", ROOT / "benchmarks" / "publish.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["publish"] = module
    spec.loader.exec_module(module)
    return module


def _outside_generated(text: str) -> str:
    return re.sub(r"<!-- figures:begin -->.*?<!-- figures:end -->", "", text, flags=re.DOTALL)


def _prose(text: str) -> str:
    """The text without code blocks and inline code: commands and their arguments are not figures."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def test_the_benchmark_page_is_what_the_results_give() -> None:
    publish = _publisher()
    results = publish.load_results()  # also fails on a result or a plot that no script writes
    page = ROOT / "docs" / "benchmarks.md"
    assert page.is_file(), "docs/benchmarks.md is missing: run python benchmarks/publish.py"
    assert page.read_text(encoding="utf-8") == publish.page(results), "docs/benchmarks.md differs from the results: run python benchmarks/publish.py"


def test_the_readme_blocks_are_what_the_results_give() -> None:
    publish = _publisher()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- figures:begin -->" in readme
    assert readme == publish.render_readme(readme, publish.load_results()), "README's generated block is stale: run python benchmarks/publish.py"


def test_every_cited_key_is_in_its_result() -> None:
    publish = _publisher()
    results = publish.load_results()
    missing = [f"{stem}: {line}" for stem, data in results.items() for line in publish.SECTIONS[stem](stem, data)
               if "not in the result" in line and "| model:" not in line and not line.startswith("- model")]
    assert not missing, "figures the page cites that their result does not hold (a renamed key?):\n" + "\n".join(missing)


def test_a_result_recorded_before_the_quiet_rule_is_never_comparable() -> None:
    publish = _publisher()
    legacy = {"commit": "abc1234", "comparable": True, "comparable_note": "load stayed within the 2 cores", "load": [{"busy": False}]}
    ok, note = publish.status("soak", legacy)
    assert not ok and "python benchmarks/soak.py" in note
    marked = publish.mark("soak", legacy)
    assert marked["comparable"] is False and marked["comparable_recorded"]["comparable"] is True
    assert {k: v for k, v in marked.items() if not k.startswith("comparable")} == {"commit": "abc1234", "load": [{"busy": False}]}


def test_a_section_renders_a_result_that_lacks_its_keys() -> None:
    publish = _publisher()  # a rerun may drop or rename keys: the page then says so instead of failing to build
    for stem, render in publish.SECTIONS.items():
        lines = render(stem, {"commit": "abc1234"})
        assert lines[0].startswith("## ") and any("not comparable" in line for line in lines)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_publishes_a_figure_by_hand(path: Path) -> None:
    if path.name == "benchmarks.md":
        return  # generated from the results, checked above
    text = _prose(_outside_generated(path.read_text(encoding="utf-8")))
    found = [m.group(0).strip() for m in MEASURED.finditer(text)]
    stray = sorted({f for f in found if f not in ALLOWED})
    assert not stray, (f"{path.relative_to(ROOT)} carries figures that look measured: {stray}. Publish them through "
                       "benchmarks/publish.py (docs/benchmarks.md), or, for a setting or a limit, add it to ALLOWED with what it is.")


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_pages_resolve(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    broken = []
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", link):
            continue
        name, _, anchor = link.partition("#")
        target = (path.parent / name) if name else path
        if not target.exists() or (anchor and target.suffix == ".md" and anchor not in _anchors(target)):
            broken.append(link)
    assert not broken, f"{path.relative_to(ROOT)} links to pages or headings that do not exist: {broken}"
