"""Both faces derive from one input model per verb: same names, defaults, ranges and choices, same results.

The CLI's click parameters and the MCP tool's published input schema are each compared with the
verb's model in requests.py; every CLI verb has a tool and every tool a CLI verb (jobs aside: the CLI
runs long steps in the foreground); and the result of a verb is the same model on both faces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from cli_runner import cli_in_process
from mcp import Client

from model_serving.cli.main import main_group
from model_serving.mcp.server import create_server
from model_serving.requests import flat_schema
from model_serving.settings import Settings

# verb: (CLI command path, MCP tool)
VERBS = {
    "inspect": ("inspect", "inspect_model"),
    "export": ("export", "export_gguf"),
    "merge": ("merge", "merge_adapter"),
    "quantize": ("quantize", "quantize_gguf"),
    "serve start": ("serve start", "serve_start"),
    "serve stop": ("serve stop", "serve_stop"),
    "serve gateway": ("serve gateway", "serve_gateway"),
    "register": ("register", "register_model"),
    "status": ("status", "serving_status"),
    "metrics": ("metrics", "serving_metrics"),
    "cost": ("cost", "cost_estimate"),
    "plan-production": ("plan-production", "plan_production"),
    "deploy": ("deploy", "deploy_model"),
    "clean": ("clean", "clean_partials"),
    "publish": ("publish", "publish_model"),
    "bench run": ("bench run", "bench"),
    "bench sweep": ("bench sweep", "bench"),
    "bench quant-ab": ("bench quant-ab", "bench_quant_ab"),
    "bench compare": ("bench compare", "bench_compare"),
    "ollama show": ("ollama show", "ollama_show"),
    "ollama probe": ("ollama probe", "ollama_probe"),
    "ollama modelfile": ("ollama modelfile", "ollama_modelfile"),
    "ollama check-modelfile": ("ollama check-modelfile", "ollama_check_modelfile"),
    "eval": ("eval", "eval_versions"),
}
MCP_ONLY = {"job_status", "job_cancel"}  # the CLI waits for its long steps instead of handing out jobs
# CLI views of what serving_status returns whole on MCP (one call, and fewer tools/list characters): same input model
CLI_VIEWS = {"serve list": "serving_status", "ollama version": "serving_status", "ollama list": "serving_status", "ollama ps": "serving_status"}
# CLI verbs that are one action of one tool on MCP: (tool, action, CLI field -> tool field)
CLI_ACTIONS = {"ollama cp": ("ollama_manage", "copy", {"source": "name"}), "ollama rm": ("ollama_manage", "delete", {}),
               "ollama unload": ("ollama_manage", "unload", {}), "ollama pull": ("ollama_manage", "pull", {})}
CLI_ACTIONS |= {verb: ("model_versions", verb, {}) for verb in ("history", "promote", "rollback", "canary", "prune")}  # issue 23
CLI_ONLY = {"bench roofline": "every bench result of a served GGUF carries the roofline"}
CLI_DISPLAY_ONLY = {"ollama show": {"only_modelfile"}, "ollama rm": {"yes"}, "status": {"watch", "interval"}}  # presentation, not capability
CLI_WITHOUT_MODEL = {"skill", "mcp-config"}  # authoring tools for this repository, not serving verbs
CLI_WITHOUT_MODEL |= {"engines"}  # engines install: minutes of pip into a venv on the host, an operator step kept off MCP


def command(path: str) -> click.Command:
    found: click.Command = main_group
    for part in path.split():
        assert isinstance(found, click.Group), path
        found = found.commands[part]
    return found


def all_commands(group: click.Group = main_group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        if path in CLI_WITHOUT_MODEL:
            continue
        if isinstance(cmd, click.Group):
            found |= all_commands(cmd, f"{path} ")
        else:
            found[path] = cmd
    return found


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import anyio

    root = tmp_path_factory.mktemp("parity")
    server = create_server(Settings.from_env(roots=[str(root)], home=str(root / "home")))

    async def listed() -> dict[str, Any]:
        async with Client(server) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    found = anyio.run(listed)
    found["__specs__"] = server.specs
    return found


def test_every_verb_is_on_both_faces(tools: dict[str, Any]) -> None:
    assert set(all_commands()) == set(VERBS) | set(CLI_VIEWS) | set(CLI_ACTIONS) | set(CLI_ONLY), "a CLI verb without a tool, or a stale entry"
    tool_names = {name for name in tools if name != "__specs__"}
    covered = {tool for _, tool in VERBS.values()} | {tool for tool, _, _ in CLI_ACTIONS.values()}
    assert tool_names - MCP_ONLY == covered, "a tool without a CLI verb"


@pytest.mark.parametrize("verb", sorted(VERBS | CLI_VIEWS.keys()))
def test_cli_options_are_the_model_fields(verb: str, tools: dict[str, Any]) -> None:
    path, tool = VERBS.get(verb) or (verb, CLI_VIEWS[verb])
    model = command(path).callback.request_model  # type: ignore[union-attr]
    assert model is tools["__specs__"][tool].request, f"{verb} and {tool} use different input models"
    schema = flat_schema(model)
    params = {p.name: p for p in command(path).params if p.name not in CLI_DISPLAY_ONLY.get(verb, set()) | set(model.renamed)}
    assert set(params) == set(schema)
    for old, new in model.renamed.items():  # an old spelling stays one release, and its help says what replaced it
        kept = next(p for p in command(path).params if p.name == old)
        assert "Deprecated" in (kept.help or "") and "--" + new.replace("_", "-") in (kept.help or ""), (verb, old)  # type: ignore[attr-defined]
    for name, prop in schema.items():
        param = params[name]
        kind = param.type
        if "enum" in prop:
            assert list(kind.choices) == prop["enum"], name  # type: ignore[attr-defined]
        if prop.get("type") in ("integer", "number"):
            assert (kind.min, kind.max) == (prop.get("minimum", prop.get("exclusiveMinimum")), prop.get("maximum")), name  # type: ignore[attr-defined]
            assert getattr(kind, "min_open", False) == ("exclusiveMinimum" in prop), name
        if isinstance(param, click.Option):
            assert param.default == (None if prop["required"] else prop.get("default")), name
        assert param.required == prop["required"], name


@pytest.mark.parametrize("tool", sorted({t for _, t in VERBS.values()} | MCP_ONLY))
def test_tool_parameters_are_the_model_fields(tool: str, tools: dict[str, Any]) -> None:
    schema = flat_schema(tools["__specs__"][tool].request)
    published = tools[tool].input_schema
    assert set(published["properties"]) == set(schema)
    assert set(published.get("required", [])) == {n for n, p in schema.items() if p["required"]}
    for name, prop in schema.items():
        given = published["properties"][name]
        for key in ("minimum", "maximum", "exclusiveMinimum", "enum"):
            assert given.get(key) == prop.get(key), (name, key)
        if prop.get("default") not in (None, False):  # a flag without a default is false (server instructions)
            assert given["default"] == prop["default"], name
        assert "default" not in given or given["default"] == prop.get("default"), name


def test_both_faces_return_the_same_result(settings: Settings, tiny_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import anyio

    roots = [a for r in settings.roots for a in ("--root", str(r))]
    cases = [(["inspect", str(tiny_gguf)], "inspect_model", {"path": str(tiny_gguf)}),
             (["status"], "serving_status", {}),
             (["clean", str(tmp_path), "--plan"], "clean_partials", {"directory": str(tmp_path), "plan": True}),
             ]

    async def over_mcp() -> list[Any]:
        async with Client(create_server(settings)) as client:
            return [(await client.call_tool(tool, args)).structured_content for _, tool, args in cases]

    structured = anyio.run(over_mcp)
    for (argv, tool, _), from_mcp in zip(cases, structured, strict=True):
        code, out, err = cli_in_process(capsys, "--json", *roots, *argv)
        assert code == 0, err
        assert json.loads(out) == from_mcp, tool


def test_the_cli_views_show_what_serving_status_returns(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    import anyio

    async def over_mcp() -> Any:
        async with Client(create_server(settings)) as client:
            return (await client.call_tool("serving_status", {})).structured_content

    status = anyio.run(over_mcp)
    roots = [a for r in settings.roots for a in ("--root", str(r))]
    views = {}
    for argv in (["serve", "list"], ["ollama", "version"]):
        code, out, err = cli_in_process(capsys, "--json", *roots, *argv)
        assert code == 0, err
        views[" ".join(argv)] = json.loads(out)
    assert [m["name"] for m in views["serve list"]["items"]] == [e["model"]["name"] for e in status["engine"]]
    for key in ("host", "reachable", "version", "error", "next_step"):
        assert views["ollama version"][key] == status["ollama"][key], key


@pytest.mark.parametrize("verb", sorted(CLI_ACTIONS))
def test_a_cli_action_is_its_tool_with_the_action_named(verb: str, tools: dict[str, Any]) -> None:
    tool, action, renamed = CLI_ACTIONS[verb]
    whole = flat_schema(tools["__specs__"][tool].request)
    assert action in whole["action"]["enum"], (verb, action)
    cli = flat_schema(command(verb).callback.request_model)  # type: ignore[union-attr]
    for name, prop in cli.items():
        same = whole[renamed.get(name, name)]
        for key in ("type", "pattern", "minLength", "maxLength", "enum"):
            assert prop.get(key) == same.get(key), (verb, name, key)
    optional = {n for n, p in whole.items() if not p["required"]}
    assert set(whole) - {"action"} - {renamed.get(n, n) for n in cli} <= optional, f"{verb} lacks a required field of {tool}"

