"""One spelling per idea (plan, replace, output): the old names still work for one release, on both faces, and say so."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from cli_runner import cli_in_process
from mcp import Client

from model_serving.cli.main import main_group
from model_serving.mcp.server import create_server
from model_serving.requests import RENAMED_UNTIL, Request
from model_serving.settings import Settings


def _models() -> list[type[Request]]:
    found, todo = [], [Request]
    while todo:
        model = todo.pop()
        found.append(model)
        todo.extend(model.__subclasses__())
    return found


def test_every_old_name_points_at_a_field_and_uses_no_old_spelling() -> None:
    renamed = {model: model.renamed for model in _models() if model.renamed}
    assert renamed, "no verb keeps an old spelling"
    for model, pairs in renamed.items():
        for old, new in pairs.items():
            assert new in model.model_fields and old not in model.model_fields, (model.__name__, old)
            assert new in ("plan", "replace", "output"), (model.__name__, new)
    spelled = {name for model in _models() for name in model.model_fields}
    assert not spelled & {"plan_only", "overwrite", "out_dir", "output_dir"}, "a field is still spelled the old way"


def roots(settings: Settings) -> list[str]:
    return [arg for root in settings.roots for arg in ("--root", str(root))]


def test_cli_old_flags_work_with_a_warning_and_help_says_so(settings: Settings, tiny_checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    base = ("--json", *roots(settings), "deploy", str(tiny_checkpoint))
    code, out, err = cli_in_process(capsys, *base, "--plan-only", "--out-dir", str(tmp_path / "old"))
    assert code == 0, err
    assert json.loads(out)["planned_only"] is True and not (tmp_path / "old").exists()
    assert f"warning: --plan-only is deprecated (removed in {RENAMED_UNTIL}): use --plan" in err
    assert "warning: --out-dir is deprecated" in err and "use --output" in err
    code, out, err = cli_in_process(capsys, *base, "--plan", "--output", str(tmp_path / "new"))
    assert code == 0 and "deprecated" not in err, err
    code, _, err = cli_in_process(capsys, *base, "--plan", "--out-dir", str(tmp_path / "a"), "--output", str(tmp_path / "b"))
    assert code == 2 and "out_dir is the old name of output; give output only" in err and "next step:" in err
    deploy = main_group.get_command(click.Context(main_group), "deploy")
    assert deploy is not None
    helps = {p.name: p.help for p in deploy.params if isinstance(p, click.Option)}
    assert helps["plan_only"] == f"Deprecated (removed in {RENAMED_UNTIL}): use --plan."
    assert helps["out_dir"] == f"Deprecated (removed in {RENAMED_UNTIL}): use --output."


@pytest.mark.anyio
async def test_mcp_old_names_work_with_a_note(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    async with Client(create_server(settings)) as client:
        old = await client.call_tool("deploy_model", {"source": str(tiny_checkpoint), "plan_only": True, "out_dir": str(tmp_path / "o")})
        new = await client.call_tool("deploy_model", {"source": str(tiny_checkpoint), "plan": True, "output": str(tmp_path / "n")})
        both = await client.call_tool("deploy_model", {"source": str(tiny_checkpoint), "plan": True, "plan_only": True})
    assert not old.is_error, old.content[0].text
    assert "'plan_only' is deprecated" in old.content[0].text and "use 'plan'" in old.content[0].text
    assert "'out_dir' is deprecated" in old.content[0].text and "use 'output'" in old.content[0].text
    assert not new.is_error and "deprecated" not in new.content[0].text
    assert both.is_error and "give plan only" in both.content[0].text
    assert not (tmp_path / "o").exists() and not (tmp_path / "n").exists()
