"""Versions of a deployed name: `history`, `promote NAME@N`, `rollback NAME`, `canary NAME@N --share PCT`, `prune NAME`.

Each verb is one action of the MCP tool `model_versions` (one input model per verb, the fields the tool's).
"""

from __future__ import annotations

import click

from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.requests import CanaryRequest, HistoryRequest, PromoteRequest, PruneRequest, RollbackRequest, VersionsRequest
from model_serving.verbs import model_versions


@click.command("history")
@from_model(HistoryRequest, positional=("name",))
def history_cmd(app: App, req: HistoryRequest) -> None:
    """Every version of a name: source and hash, quant, quality and bench, when it was live."""
    app.show(model_versions(app.settings, VersionsRequest(action="history", name=req.name)))


@click.command("promote")
@from_model(PromoteRequest, positional=("name",))
def promote_cmd(app: App, req: PromoteRequest) -> None:
    """Make NAME@N live (all of the name's requests; gateway or Ollama), then probe the name."""
    app.show(app.run("promote", lambda p: model_versions(app.settings, VersionsRequest(action="promote", name=req.name))))


@click.command("rollback")
@from_model(RollbackRequest, positional=("name",))
def rollback_cmd(app: App, req: RollbackRequest) -> None:
    """Make the previously live version live again; the probe must answer as that version does."""
    app.show(app.run("rollback", lambda p: model_versions(app.settings, VersionsRequest(action="rollback", name=req.name))))


@click.command("canary")
@from_model(CanaryRequest, positional=("name",))
def canary_cmd(app: App, req: CanaryRequest) -> None:
    """Send --share percent of the name's requests to NAME@N on the gateway (0 ends the canary)."""
    app.show(model_versions(app.settings, VersionsRequest(action="canary", name=req.name, share=req.share)))


@click.command("prune")
@from_model(PruneRequest, positional=("name",))
def prune_cmd(app: App, req: PruneRequest) -> None:
    """Remove old versions (engine, folder; the history row stays), keeping the newest --keep (default 2), the live one and the canary."""
    app.show(model_versions(app.settings, VersionsRequest(action="prune", name=req.name, keep=req.keep, plan=req.plan)))


def register(group: click.Group) -> None:
    for command in (history_cmd, promote_cmd, rollback_cmd, canary_cmd, prune_cmd):
        group.add_command(command)
