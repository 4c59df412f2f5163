"""The condenser and the drift check: facts extracted from the served snapshot, references written
with their sources, failures leaving the old references, and upstream changes named with the tools
they affect."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from skill_helpers import SKILL, DocsSite, serve_docs, snapshot_or_skip
from werkzeug import Request, Response

from model_serving.errors import InputError
from model_serving.skill.cache import DocsCache
from model_serving.skill.condense import GENERATED_FILES, build_references, extract_facts, load_facts
from model_serving.skill.drift import check_drift
from model_serving.skill.extract import LayoutChanged
from model_serving.skill.fetch import fetch_sources
from model_serving.skill.markdown import section, tables
from model_serving.skill.sources import load_sources
from model_serving.skill.toolmap import ENDPOINT_TOOLS

SOURCES = load_sources(SKILL / "sources.yaml")


@pytest.fixture
def site(httpserver: HTTPServer) -> DocsSite:
    return serve_docs(httpserver)


@pytest.fixture
def cache(site: DocsSite, httpserver: HTTPServer, tmp_path: Path) -> DocsCache:
    docs = DocsCache(tmp_path / "cache")
    report = fetch_sources(SOURCES, docs, mirror=httpserver.url_for("/"), retries=0, backoff_s=0.001)
    assert report.failed_required == []
    return docs


@pytest.fixture
def skill(tmp_path: Path) -> Path:
    copy = tmp_path / "model-serving"
    shutil.copytree(SKILL, copy)
    return copy


def snapshot_text(path: str) -> str:
    return (snapshot_or_skip() / path).read_text(encoding="utf-8")


def test_every_modelfile_parameter_and_instruction_is_extracted(cache: DocsCache) -> None:
    facts = extract_facts(cache, SOURCES)
    page = snapshot_text("ollama/docs/modelfile.mdx")
    part = section(page, r"valid parameters", 4)
    assert part is not None
    listed = {re.sub(r"\s", "", row.split("|")[1]) for row in part.body.splitlines() if row.startswith("| ") and not row.startswith(("| Parameter", "| ---"))}
    extracted = {r["name"]: r for r in facts.tables["modelfile_parameters"].rows}
    assert set(extracted) == listed and len(listed) >= 10
    assert extracted["num_ctx"]["type"] == "int" and extracted["temperature"]["default"] == "0.8" and extracted["stop"]["type"] == "string"
    instructions = set(re.findall(r"^\| \[`([A-Z]+)`\]", page, re.MULTILINE))
    assert {r["name"] for r in facts.tables["modelfile_instructions"].rows} == instructions


def test_every_quantization_type_the_pages_list_is_extracted(cache: DocsCache) -> None:
    facts = extract_facts(cache, SOURCES)
    quantize = snapshot_text("llama.cpp/tools/quantize/README.md")
    listed = set()
    for line in quantize.splitlines():
        if line.startswith("| Measure"):
            listed |= {cell.strip() for cell in line.split("|")[2:] if cell.strip()}
    extracted = {r["type"]: r for r in facts.tables["quantization_types"].rows}
    assert set(extracted) == listed and len(listed) >= 24
    assert all({"bpw", "size_gib", "pp512_ts", "tg128_ts"} <= set(r) for r in extracted.values())
    assert extracted["Q4_K_M"]["bpw"] == pytest.approx(4.8944) and extracted["Q8_0"]["size_gib"] == pytest.approx(7.95)
    ollama_listed = set(re.findall(r"^- `(q\w+)`", snapshot_text("ollama/docs/import.mdx"), re.MULTILINE))
    assert {r["type"] for r in facts.tables["ollama_quantize_targets"].rows} == ollama_listed
    enum = set(re.findall(r"^\s+GGML_TYPE_(\w+)\s*=", snapshot_text("ggml/docs/gguf.md"), re.MULTILINE)) - {"COUNT"}
    assert {r["name"] for r in facts.tables["ggml_types"].rows} == enum


def test_other_tables_hold_the_facts_the_tools_rely_on(cache: DocsCache) -> None:
    facts = extract_facts(cache, SOURCES)
    endpoints = {r["endpoint"]: r for r in facts.tables["ollama_endpoints"].rows}
    assert set(endpoints) == set(ENDPOINT_TOOLS)
    assert {"files", "quantize", "template", "parameters"} <= {f["name"] for f in endpoints["POST /api/create"]["fields"]}
    assert {"eval_count", "eval_duration", "prompt_eval_count", "done_reason"} <= set(endpoints["POST /api/chat"]["response_keys"])
    env = {r["name"]: r["default"] for r in facts.tables["ollama_environment"].rows}
    assert env["OLLAMA_NUM_PARALLEL"] == "1" and env["OLLAMA_KV_CACHE_TYPE"] == "f16" and env["OLLAMA_HOST"] == "127.0.0.1:11434"
    keys = {r["key"]: r for r in facts.tables["gguf_keys"].rows}
    assert keys["general.architecture"]["required"] and keys["tokenizer.chat_template"]["type"] == "string"
    server = {r["env"]: r for r in facts.tables["llama_server_options"].rows}
    assert server["LLAMA_ARG_CACHE_TYPE_K"]["default"] == "f16" and "q8_0" in server["LLAMA_ARG_CACHE_TYPE_K"]["allowed"]


def test_build_writes_references_with_their_sources(cache: DocsCache, skill: Path) -> None:
    result = build_references(cache, SOURCES, skill)
    manifest = cache.load()
    for name in GENERATED_FILES:
        assert (skill / "references" / name).is_file()
    quant = (skill / "references" / "quantization.md").read_text(encoding="utf-8")
    entry = manifest.entries["llama-quantize"]
    assert entry.url in quant and entry.sha256 in quant and entry.fetched_at[:10] in quant
    assert "| `Q4_K_M` | 4.8944 |" in quant
    assert result.tables["quantization_types"] == 24
    assert not list((skill / "references").glob(".build-*"))  # no staging folder left behind


def test_committed_references_are_what_build_makes_from_the_snapshot(cache: DocsCache, skill: Path) -> None:
    """The references in the repository were produced by `skill build` from these very pages."""
    committed = load_facts(SKILL / "references")
    assert committed is not None
    build_references(cache, SOURCES, skill)
    rebuilt = load_facts(skill / "references")
    assert rebuilt is not None
    assert rebuilt.model_dump()["tables"] == committed.model_dump()["tables"]
    assert {k: v.sha256 for k, v in rebuilt.sources.items()} == {k: v.sha256 for k, v in committed.sources.items()}
    for name in GENERATED_FILES[:-1]:
        strip = lambda text: re.sub(r"\| \d{4}-\d\d-\d\d \|", "| DATE |", text)  # noqa: E731  fetch dates differ
        assert strip((skill / "references" / name).read_text(encoding="utf-8")) == strip((SKILL / "references" / name).read_text(encoding="utf-8")), name


def test_hand_edited_cache_stops_the_build_and_keeps_the_references(cache: DocsCache, skill: Path) -> None:
    before = {n: (skill / "references" / n).read_bytes() for n in GENERATED_FILES}
    page = cache.dir / "ollama-modelfile.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nextra line\n", encoding="utf-8")
    with pytest.raises(InputError, match="edited by hand"):
        build_references(cache, SOURCES, skill)
    assert {n: (skill / "references" / n).read_bytes() for n in GENERATED_FILES} == before


def test_a_page_whose_layout_changed_stops_the_build_and_keeps_the_references(cache: DocsCache, skill: Path) -> None:
    before = {n: (skill / "references" / n).read_bytes() for n in GENERATED_FILES}
    manifest = cache.load()
    entry = manifest.entries["llama-quantize"]
    cache.store(manifest, entry.model_copy(update={"sha256": __import__("hashlib").sha256(b"# quantize\n\nno tables any more\n").hexdigest()}), "# quantize\n\nno tables any more\n")
    with pytest.raises(LayoutChanged, match="quantization types"):
        build_references(cache, SOURCES, skill)
    assert {n: (skill / "references" / n).read_bytes() for n in GENERATED_FILES} == before


def test_drift_names_changed_facts_and_affected_tools(httpserver: HTTPServer, site: DocsSite, cache: DocsCache, skill: Path) -> None:
    build_references(cache, SOURCES, skill)
    assert check_drift(cache, SOURCES, skill).up_to_date

    # Upstream changes: a default moves, a parameter appears, a quantization type disappears.
    modelfile = snapshot_text("ollama/docs/modelfile.mdx").replace("(Default: 0.8)", "(Default: 0.6)")
    modelfile = modelfile.replace("| min_p ", "| top_n_sigma | Experimental sampler. (Default: 1.0) | float | top_n_sigma 1.0 |\n| min_p ", 1)
    quantize = snapshot_text("llama.cpp/tools/quantize/README.md").replace("| IQ4_NL       |", "|              |")

    def changed(request: Request) -> Response:
        if request.path.endswith("docs/modelfile.mdx"):
            return Response(modelfile, headers={"ETag": '"v2"'})
        if request.path.endswith("quantize/README.md"):
            return Response(quantize, headers={"ETag": '"v2"'})
        return site(request)

    httpserver.clear()
    httpserver.expect_request(re.compile(".*")).respond_with_handler(changed)
    fetch_sources(SOURCES, cache, mirror=httpserver.url_for("/"), retries=0)
    report = check_drift(cache, SOURCES, skill)
    assert not report.up_to_date
    found = {(c.table, c.key, c.change): c for c in report.facts}
    temperature = found[("modelfile_parameters", "temperature", "changed")]
    assert temperature.fields == ["default"] and temperature.before["default"] == "0.8" and temperature.after["default"] == "0.6"
    assert ("modelfile_parameters", "top_n_sigma", "added") in found
    assert ("quantization_types", "IQ4_NL", "removed") in found
    assert {"register_model", "quantize_gguf"} <= set(report.tools_affected)
    assert {p.source_id for p in report.pages_changed} == {"ollama-modelfile", "llama-quantize"}
    json.dumps(report.model_dump(mode="json"))  # the CLI's --json output


def test_check_without_built_references_says_what_to_do(cache: DocsCache, skill: Path) -> None:
    (skill / "references" / "facts.json").unlink()
    with pytest.raises(InputError, match="skill build"):
        check_drift(cache, SOURCES, skill)


def test_markdown_tables_reader_handles_escaped_pipes() -> None:
    found = tables("| a | b |\n|---|:--:|\n| x \\| y | `z` |\n")
    assert found == [(["a", "b"], [["x | y", "`z`"]])]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from model_serving.cli.main import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_fetch_build_check_round_trip(site: DocsSite, httpserver: HTTPServer, skill: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--cache-dir", str(tmp_path / "cli-cache"), "--skill-dir", str(skill)]
    code, out, _ = run_cli(["--json", "skill", "fetch", *where, "--mirror", httpserver.url_for("/")], capsys)
    assert code == 0 and json.loads(out)["failed_required"] == []
    code, out, _ = run_cli(["--json", "skill", "build", *where], capsys)
    assert code == 0 and json.loads(out)["tables"]["modelfile_parameters"] == 11
    code, out, _ = run_cli(["skill", "check", *where], capsys)
    assert code == 0 and "up to date" in out
    code, out, _ = run_cli(["--json", "skill", "fetch", *where, "--offline"], capsys)
    assert code == 0 and {p["state"] for p in json.loads(out)["pages"] if p["source_id"] != "vllm-serve"} == {"ok"}
    page = tmp_path / "cli-cache" / "gguf-spec.md"
    page.write_text(page.read_text(encoding="utf-8").replace("`general.alignment: uint32`", "`general.alignment: uint64`"), encoding="utf-8")
    code, _, err = run_cli(["skill", "build", *where], capsys)
    assert code != 0 and "edited by hand" in err and "next step:" in err


def test_cli_fetch_reports_failures_with_a_non_zero_exit(httpserver: HTTPServer, skill: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    httpserver.expect_request(re.compile(".*")).respond_with_data("gone", status=404)
    code, out, err = run_cli(["skill", "fetch", "--cache-dir", str(tmp_path), "--skill-dir", str(skill), "--mirror", httpserver.url_for("/"), "--only", "ollama-api"], capsys)
    assert code != 0 and "HTTP 404" in out and "could not be fetched" in err
