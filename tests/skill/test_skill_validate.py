"""Both skills pass the Agent Skills reference validator and our own checks; every tool the skill
names exists on the live MCP server; the skill is served as MCP resources with a deploy prompt."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from skill_helpers import REPO, SKILL

from model_serving.mcp.server import create_server, server_tool_names
from model_serving.mcp.skill import deploy_prompt_text
from model_serving.settings import Settings
from model_serving.skill.toolmap import all_tool_names
from model_serving.skill.validate import MAX_BODY_LINES, relative_targets, validate_skill

SKILLS = [SKILL, REPO]


async def live_tools(settings: Settings) -> set[str]:
    async with Client(create_server(settings), raise_exceptions=True) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize("folder", SKILLS, ids=["portable", "repo-root"])
def test_reference_validator_accepts_both_skills(folder: Path, tmp_path: Path) -> None:
    from skills_ref import read_properties, validate

    name = read_properties(folder).name if folder.name == "model-serving" else re.search(r"^name: (\S+)", (folder / "SKILL.md").read_text(encoding="utf-8"), re.MULTILINE).group(1)  # type: ignore[union-attr]
    staged = folder
    if folder.name != name:  # the repo-root skill is validated as it is installed: in a folder of its own name
        staged = tmp_path / name
        staged.mkdir()
        shutil.copy2(folder / "SKILL.md", staged / "SKILL.md")
    assert validate(staged) == []
    cli = shutil.which("agentskills", path=str(Path(sys.executable).parent)) or shutil.which("agentskills")
    if cli is None:
        pytest.skip("the agentskills command (PyPI skills-ref) is not installed")
    run = subprocess.run([cli, "validate", str(staged)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_two_skills_have_distinct_names() -> None:
    names = [re.search(r"^name: (\S+)", (f / "SKILL.md").read_text(encoding="utf-8"), re.MULTILINE).group(1) for f in SKILLS]  # type: ignore[union-attr]
    assert names == ["model-serving", "model-serving-dev"]


@pytest.mark.anyio
async def test_every_tool_name_the_skill_mentions_exists_on_the_server(settings: Settings) -> None:
    tools = await live_tools(settings)
    assert await server_tool_names(settings) == tools
    reports = [validate_skill(folder, tool_names=tools, as_installed=folder == REPO) for folder in SKILLS]
    for report in reports:
        assert report.ok, report.problems
    mentioned = set(reports[0].tools_mentioned)
    assert {"inspect_model", "export_gguf", "quantize_gguf", "register_model", "bench", "job_status"} <= mentioned
    missing_from_map = all_tool_names() - tools
    assert not missing_from_map, f"toolmap names tools the server lacks: {missing_from_map}"
    prompt_words = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", deploy_prompt_text("m", "Ollama", "", "")))
    parameters = {name for spec in create_server(settings).specs.values() for name in spec.request.model_fields}
    assert prompt_words <= tools | parameters, prompt_words - tools - parameters


def test_budgets_and_links_hold() -> None:
    text = (SKILL / "SKILL.md").read_text(encoding="utf-8")
    assert text.count("\n") < MAX_BODY_LINES
    targets = relative_targets(text)
    assert "references/quantization.md" in targets and "references/memory-and-cost.md" in targets
    for target in targets:
        assert (SKILL / target).is_file(), target
    listed = {t.split("/", 1)[1] for t in targets if t.startswith("references/")}
    on_disk = {p.name for p in (SKILL / "references").glob("*.md")}
    assert on_disk <= listed, f"reference files SKILL.md never points to: {on_disk - listed}"


def test_validator_catches_broken_links_unknown_tools_and_long_bodies(tmp_path: Path) -> None:
    bad = tmp_path / "model-serving"
    shutil.copytree(SKILL, bad)
    text = (bad / "SKILL.md").read_text(encoding="utf-8")
    text = text.replace("`references/tuning.md`", "`references/tunning.md`", 1).replace("`quantize_gguf`", "`quantise_gguf`", 1)
    text += "\n" * MAX_BODY_LINES
    (bad / "SKILL.md").write_text(text, encoding="utf-8")
    report = validate_skill(bad, tool_names={"quantize_gguf", "inspect_model"})
    problems = "\n".join(report.problems)
    assert not report.ok
    assert "references/tunning.md, which does not exist" in problems
    assert "quantise_gguf" in problems
    assert f"keep it under {MAX_BODY_LINES}" in problems
    renamed = tmp_path / "other-name"
    bad.rename(renamed)
    assert any("must match skill name" in p for p in validate_skill(renamed).problems)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_skill_is_served_as_resources_and_a_deploy_prompt(settings: Settings, mode: str) -> None:
    async with Client(create_server(settings), mode=mode, raise_exceptions=mode == "auto") as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "skill://model-serving/SKILL.md" in uris
        assert "skill://model-serving/references/quantization.md" in uris
        skill = await client.read_resource("skill://model-serving/SKILL.md")
        assert skill.contents[0].text == (SKILL / "SKILL.md").read_text(encoding="utf-8")  # type: ignore[union-attr]
        reference = await client.read_resource("skill://model-serving/references/memory-and-cost.md")
        assert "KV cache per token" in reference.contents[0].text  # type: ignore[union-attr]
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "skill://model-serving/references/{name}" in templates
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert {a.name for a in prompts["deploy_model"].arguments or []} >= {"model_path", "target"}
        result = await client.get_prompt("deploy_model", {"model_path": "/models/my-finetune", "target": "ollama", "hardware": "RTX 3060 12 GB"})
        text = result.messages[0].content.text  # type: ignore[union-attr]
        assert "/models/my-finetune" in text and "RTX 3060 12 GB" in text and "Ollama" in text


@pytest.mark.anyio
async def test_reference_template_refuses_path_traversal(settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        for name in ("..%2F..%2FSKILL.md", "..%2F..%2F..%2Fpyproject.toml"):
            with pytest.raises(Exception):  # noqa: B017  the SDK reports it as an MCP error
                await client.read_resource(f"skill://model-serving/references/{name}")
