"""CLI verbs: `model-serving skill fetch|build|check|install|validate` and `model-serving mcp-config`."""

from __future__ import annotations

from pathlib import Path

import anyio
import click

from model_serving.cli.app import App, pass_app
from model_serving.skill import workflows
from model_serving.skill.condense import build_references
from model_serving.skill.fetch import cache_report
from model_serving.skill.install import SKILL_DIRS, mcp_config

# Imported inside functions: the MCP server (the mcp SDK, seconds to import), only to list its tool names.

_PATH = click.Path(path_type=Path)


def _options(fn):  # type: ignore[no-untyped-def]
    fn = click.option("--skill-dir", "skill_folder", type=_PATH, help="Skill folder (default: skills/model-serving of this checkout).")(fn)
    fn = click.option("--cache-dir", type=_PATH, help="Docs cache (default: docs_cache/ of this checkout, else under --home).")(fn)
    return click.option("--sources", "sources_file", type=_PATH, help="Sources file (default: sources.yaml in the skill folder).")(fn)


def _resolve(app: App, skill: Path | None, cache_dir: Path | None, sources_file: Path | None) -> workflows.Workspace:
    return workflows.workspace(app.settings.home, skill, cache_dir, sources_file)


@click.group("skill")
def skill_group() -> None:
    """Build, check, validate and install the model-serving Agent Skill."""


@skill_group.command("fetch")
@_options
@click.option("--mirror", help="Fetch the same paths from this base URL (a loopback or listed host), e.g. an internal docs mirror.")
@click.option("--only", multiple=True, help="Fetch only these source ids (repeatable).")
@click.option("--force", is_flag=True, help="Download even when the cached copy is current.")
@click.option("--offline", is_flag=True, help="Do not connect; report what is cached and how old it is.")
@pass_app
def fetch_cmd(app: App, skill_folder: Path | None, cache_dir: Path | None, sources_file: Path | None, mirror: str | None, only: tuple[str, ...], force: bool, offline: bool) -> None:
    """Download the upstream pages listed in sources.yaml into the docs cache."""
    ws = _resolve(app, skill_folder, cache_dir, sources_file)
    if offline:
        report = cache_report(ws.sources, ws.cache)

        def show_cache() -> None:
            click.echo(f"docs cache {report.cache_dir}")
            for page in report.pages:
                age = f"{page.age_days:.1f} days old" if page.age_days is not None else ""
                click.echo(f"  {page.source_id:24} {page.state:9} {age}")
            if report.oldest_days is not None:
                click.echo(f"oldest page: {report.oldest_days:.1f} days")

        app.emit(report, show_cache)
        return
    result = app.run("fetching docs", lambda p: workflows.fetch(ws, mirror=mirror, only=only, force=force, progress=p))

    def show() -> None:
        for page in result.pages:
            detail = page.error or f"{page.bytes} bytes"
            click.echo(f"  {page.source_id:24} {page.status:13} {detail}")
        click.echo(f"cache: {result.cache_dir}")

    app.emit(result, show)
    workflows.refuse_failed_fetch(result)


@skill_group.command("build")
@_options
@pass_app
def build_cmd(app: App, skill_folder: Path | None, cache_dir: Path | None, sources_file: Path | None) -> None:
    """Condense the cached pages into the skill's generated reference tables."""
    ws = _resolve(app, skill_folder, cache_dir, sources_file)
    result = app.run("building references", lambda p: build_references(ws.cache, ws.sources, ws.skill, p))

    def show() -> None:
        for name, rows in result.tables.items():
            click.echo(f"  {name:26} {rows} rows")
        click.echo(f"wrote {', '.join(result.files)} in {ws.skill}")

    app.emit(result, show)


@skill_group.command("check")
@_options
@click.option("--fetch", "fetch_first", is_flag=True, help="Fetch the pages first, to compare against upstream as it is now.")
@click.option("--mirror", help="With --fetch: the mirror to fetch from.")
@pass_app
def check_cmd(app: App, skill_folder: Path | None, cache_dir: Path | None, sources_file: Path | None, fetch_first: bool, mirror: str | None) -> None:
    """Report facts that changed upstream since the references were built (non-zero exit when any did)."""
    ws = _resolve(app, skill_folder, cache_dir, sources_file)
    report = app.run("checking references", lambda p: workflows.check(ws, fetch_first=fetch_first, mirror=mirror, progress=p))

    def show() -> None:
        if report.up_to_date:
            click.echo(f"references are up to date with the cached pages (built {report.references_built_at})")
            return
        for change in report.facts:
            what = f" ({', '.join(change.fields)})" if change.fields else ""
            tools = f" -> {', '.join(change.tools)}" if change.tools else ""
            click.echo(f"  {change.change:8} {change.table}: {change.key}{what}{tools}")
        click.echo(f"tools affected: {', '.join(report.tools_affected) or 'none'}")
        click.echo("next step: review the changes, then `model-serving skill build` and re-run the skill tests")

    app.emit(report, show)
    workflows.refuse_drift(report)


@skill_group.command("install")
@click.option("--agent", "agents", multiple=True, required=True, type=click.Choice(list(SKILL_DIRS)), help="Agent to install for (repeatable).")
@click.option("--scope", type=click.Choice(["user", "project"]), default="project", show_default=True)
@click.option("--project", type=_PATH, default=Path("."), help="Project root for --scope project.")
@click.option("--skill-dir", "skill_folder", type=_PATH, help="Skill folder to install (default: this checkout's).")
@click.option("--force", is_flag=True, help="Replace a different copy that is already there.")
@pass_app
def install_cmd(app: App, agents: tuple[str, ...], scope: str, project: Path, skill_folder: Path | None, force: bool) -> None:
    """Copy the skill into the folder each agent reads skills from."""
    results = workflows.install(agents, scope, project=project, skill=skill_folder, force=force)

    def show() -> None:
        for r in results:
            click.echo(f"{r.action:9} {r.agent:12} {r.path}")

    app.emit(results, show)


@skill_group.command("validate")
@click.argument("folders", nargs=-1, type=_PATH)
@click.option("--no-tools", is_flag=True, help="Skip checking tool names against the MCP server.")
@pass_app
def validate_cmd(app: App, folders: tuple[Path, ...], no_tools: bool) -> None:
    """Validate skill folders (default: the portable skill and the repo-root skill)."""
    from model_serving.mcp.server import server_tool_names  # the CLI lists the tools of the real MCP face

    tools = None if no_tools else anyio.run(server_tool_names, app.settings)
    reports = workflows.validate(folders, tools)

    def show() -> None:
        for report in reports:
            click.echo(f"{'ok  ' if report.ok else 'FAIL'} {report.name} ({report.skill_dir}): {report.body_lines} body lines, {report.skill_bytes} bytes")
            for problem in report.problems:
                click.echo(f"     - {problem}")

    app.emit(reports, show)
    workflows.refuse_invalid(reports)


@click.command("mcp-config")
@click.option("--client", required=True, type=click.Choice(["claude-code", "claude-desktop", "codex", "cursor", "gemini", "vscode"]))
@click.option("--workspace", "workspaces", multiple=True, type=_PATH, help="Folder the server may read and write (repeatable; default: the current folder).")
@click.option("--launcher", help="Launch command instead of the installed model-serving-mcp, e.g. 'uvx model-serving-mcp'.")
@click.option("--scope", type=click.Choice(["user", "project"]), default="user", show_default=True, help="claude-code only.")
@pass_app
def mcp_config_cmd(app: App, client: str, workspaces: tuple[Path, ...], launcher: str | None, scope: str) -> None:
    """Print the command or JSON block that registers the MCP server with a client."""
    config = mcp_config(client, list(workspaces) or [Path.cwd()], launcher=launcher, scope=scope)  # type: ignore[arg-type]

    def show() -> None:
        click.echo(f"# {config.where}", err=True)
        click.echo(config.text)

    app.emit(config, show)


def register(group: click.Group) -> None:
    group.add_command(skill_group)
    group.add_command(mcp_config_cmd)
