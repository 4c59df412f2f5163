"""The MCP contract an agent reads: a small tools/list, names and values that exist, honest hints."""

from __future__ import annotations

import re
from typing import Any

import pytest
from mcp import Client

from model_serving.mcp.server import INSTRUCTIONS, create_server
from model_serving.mcp.skill import PROMPT_TARGETS, deploy_prompt_text, versions_prompt_text
from model_serving.quantize.quantizer import resolve_qtype
from model_serving.requests import DeployRequest, flat_schema
from model_serving.settings import Settings

pytestmark = pytest.mark.anyio

# characters of the tools/list result as it travels (compact JSON): 25 tools whose published schemas are the validated
# ones, types, lengths and patterns included (about 4,700 tokens); eval_versions (issue 23) adds about 1,000;
# the format fields of quantize_gguf, deploy_model and bench_compare about 200
TOOLS_LIST_LIMIT = 21_200


async def listed(settings: Settings) -> tuple[Any, Any]:
    async with Client(create_server(settings)) as client:
        return await client.list_tools(), await client.list_prompts()


async def test_tools_list_fits_an_agents_budget(settings: Settings) -> None:
    tools, _ = await listed(settings)
    size = len(tools.model_dump_json(by_alias=True, exclude_none=True))
    assert size < TOOLS_LIST_LIMIT, f"tools/list is {size} characters"
    for tool in tools.tools:
        assert tool.description and len(tool.description) <= 160, (tool.name, tool.description)
        for name, prop in tool.input_schema["properties"].items():
            assert len(prop.get("description", "")) <= 60, (tool.name, name)


def identifiers(text: str) -> set[str]:
    return set(re.findall(r"\b[a-z]+(?:_[a-z0-9]+)+\b", text))


async def test_prompts_instructions_and_descriptions_name_only_what_exists(settings: Settings) -> None:
    tools, prompts = await listed(settings)
    tool_names = {t.name for t in tools.tools}
    parameters = {p for t in tools.tools for p in t.input_schema["properties"]}
    texts = {"instructions": INSTRUCTIONS, **{f"tool {t.name}": t.description or "" for t in tools.tools},
             **{f"{t.name}.{n}": p.get("description", "") for t in tools.tools for n, p in t.input_schema["properties"].items()},
             **{f"prompt {target}": deploy_prompt_text("m", where, "", "") for target, where in PROMPT_TARGETS.items()},
             "prompt model_versions": versions_prompt_text("m", "")}
    old_names = {old for spec in create_server(settings).specs.values() for old in spec.request.renamed}
    for where, text in texts.items():
        unknown = identifiers(text) - tool_names - parameters - (old_names if where == "instructions" else set())
        assert not unknown, f"{where} names {unknown}, which is neither a tool nor a parameter"
        for qtype in re.findall(r"\b(?:I?Q\d_[A-Z0-9_]+|Q\d_\d|B?F16)\b", text):
            resolve_qtype(qtype)  # raises for a type llama.cpp does not know
    assert {p.name for p in prompts.prompts} <= tool_names, "a prompt is named like no tool"
    targets = flat_schema(DeployRequest)["target"]["enum"]
    assert set(PROMPT_TARGETS) == set(targets), "the prompt's targets are not deploy_model's"


async def test_the_deploy_prompt_refuses_a_target_deploy_does_not_know(settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        for target in PROMPT_TARGETS:
            result = await client.get_prompt("deploy_model", {"model_path": "/m", "target": target})
            assert "deploy_model" in result.messages[0].content.text  # type: ignore[union-attr]
        with pytest.raises(Exception):  # noqa: B017 - the SDK answers with a protocol error
            await client.get_prompt("deploy_model", {"model_path": "/m", "target": "llama-server"})


async def test_replacing_tools_are_marked_destructive(settings: Settings) -> None:
    tools, _ = await listed(settings)
    by_name = {t.name: t for t in tools.tools}
    for tool in tools.tools:
        if "replace" in tool.input_schema["properties"] or "overwrite" in tool.input_schema["properties"]:
            hints = tool.annotations
            assert hints is not None and not hints.read_only_hint, tool.name
    for name in ("deploy_model", "register_model", "serve_stop", "ollama_manage", "job_cancel"):
        assert by_name[name].annotations.destructive_hint is True, name
    for name in ("inspect_model", "serving_status", "job_status", "ollama_show"):
        assert by_name[name].annotations.read_only_hint is True, name


async def test_results_come_once_with_a_short_summary(settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        for name in ("serving_status", "job_status"):
            result = await client.call_tool(name, {})
            assert not result.is_error and isinstance(result.structured_content, dict), name
            text = result.content[0].text
            assert len(text) < 300 and not text.lstrip().startswith("{"), (name, text)


async def test_every_result_schema_is_a_resource(settings: Settings) -> None:
    import json

    async with Client(create_server(settings)) as client:
        titles = {part for t in (await client.list_tools()).tools if t.output_schema for part in t.output_schema["title"].split(" | ")}
        assert "JobInfo" in titles, "job_status publishes the schema every long tool returns"
        for title in sorted(titles):
            resource = await client.read_resource(f"schema://model-serving/{title}")
            schema = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
            assert schema["properties"], title


def test_the_instructions_name_every_old_spelling_and_its_new_name(settings: Settings) -> None:
    renamed = {pair for spec in create_server(settings).specs.values() for pair in spec.request.renamed.items()}
    assert renamed, "no verb keeps an old spelling: drop this test and the instructions' sentence"
    sentence = INSTRUCTIONS[INSTRUCTIONS.index("Renamed"):]
    for old, new in renamed:
        assert re.search(rf"\b{old}\b[^.:;]*\bis {new}\b|\b{old} and \w+ are {new}\b|\band {old} are {new}\b", sentence), (old, new)
