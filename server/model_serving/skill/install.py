"""`skill install` and `mcp-config`: put the skill where each agent looks for it, and print the
registration each MCP client expects for our server.

Skill folders per agent and scope follow each agent's documented locations (Claude Code, Codex,
Cursor, Gemini CLI, GitHub Copilot). The copy leaves out evals/ and caches, replaces an older copy
only when asked, and swaps it in with a rename so an agent never reads a half-copied skill.
"""

from __future__ import annotations

import filecmp
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.skill import SKILL_NAME

Agent = Literal["claude-code", "codex", "cursor", "gemini", "copilot"]
Scope = Literal["user", "project"]
Client = Literal["claude-code", "claude-desktop", "codex", "cursor", "gemini", "vscode"]

# agent -> (project folder relative to the project root, user folder relative to home)
SKILL_DIRS: dict[str, tuple[str, str]] = {
    "claude-code": (".claude/skills", ".claude/skills"),
    "codex": (".agents/skills", ".agents/skills"),
    "cursor": (".cursor/skills", ".cursor/skills"),
    "gemini": (".gemini/skills", ".gemini/skills"),
    "copilot": (".github/skills", ".copilot/skills"),
}
_SKIP = shutil.ignore_patterns("evals", "__pycache__", "*.pyc", ".DS_Store", ".build-*")


class InstallResult(BaseModel):
    agent: str
    scope: str
    path: str = Field(description="Folder the skill now lives in")
    action: Literal["installed", "updated", "unchanged"]


def skill_target(agent: Agent, scope: Scope, *, project: Path, home: Path) -> Path:
    if agent not in SKILL_DIRS:
        raise InputError(f"Unknown agent {agent!r}.", f"Use one of: {', '.join(SKILL_DIRS)}.")
    project_dir, user_dir = SKILL_DIRS[agent]
    base = project / project_dir if scope == "project" else home / user_dir
    return base / SKILL_NAME


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["evals", "__pycache__", ".DS_Store"])
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def install_skill(source: Path, agent: Agent, scope: Scope, *, project: Path, home: Path, force: bool = False) -> InstallResult:
    target = skill_target(agent, scope, project=project, home=home)
    if not (source / "SKILL.md").is_file():
        raise InputError(f"{source} is not a skill folder (no SKILL.md).", "Point at skills/model-serving.")
    if target.resolve() == source.resolve():
        return InstallResult(agent=agent, scope=scope, path=str(target), action="unchanged")
    if target.exists() or target.is_symlink():
        if target.is_dir() and not target.is_symlink() and _same_tree(source, target):
            return InstallResult(agent=agent, scope=scope, path=str(target), action="unchanged")
        if not force:
            raise InputError(f"{target} already holds a different copy of the skill.", "Pass --force to replace it (your edits there are lost).")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{SKILL_NAME}-"))
    try:
        shutil.copytree(source, staging / SKILL_NAME, ignore=_SKIP)
        action: Literal["installed", "updated"] = "installed"
        if target.exists() or target.is_symlink():
            action = "updated"
            old = staging / "old"
            os.replace(target, old)  # moved aside first, so the swap below is one rename
        os.replace(staging / SKILL_NAME, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return InstallResult(agent=agent, scope=scope, path=str(target), action=action)


class McpConfig(BaseModel):
    client: str
    command: list[str] = Field(description="The launch command the client will run")
    text: str = Field(description="What to run or paste")
    where: str = Field(description="Where it goes")


def server_command(roots: list[Path], launcher: str | None = None) -> list[str]:
    """An absolute launch command: relative paths are the commonest reason a client cannot start a server."""
    if launcher:
        argv = shlex.split(launcher)
    else:
        script = Path(sys.executable).parent / "model-serving-mcp"
        found = script if script.exists() else shutil.which("model-serving-mcp")
        argv = [str(found)] if found else ["uvx", "model-serving-mcp"]
    for root in roots:
        argv += ["--root", str(root.resolve())]
    return argv


def mcp_config(client: Client, roots: list[Path], *, launcher: str | None = None, scope: Scope = "user", env: dict[str, str] | None = None) -> McpConfig:
    argv = server_command(roots, launcher)
    env = env or {}
    entry: dict[str, object] = {"command": argv[0], "args": argv[1:]}
    if env:
        entry["env"] = env
    if client == "claude-code":
        flags = " ".join(f"-e {shlex.quote(f'{k}={v}')}" for k, v in env.items())
        text = f"claude mcp add {SKILL_NAME} -s {'project' if scope == 'project' else 'user'} {flags + ' ' if flags else ''}-- {shlex.join(argv)}"
        where = "run in a shell; check with /mcp inside Claude Code"
    elif client == "codex":
        flags = " ".join(f"--env {shlex.quote(f'{k}={v}')}" for k, v in env.items())
        text = f"codex mcp add {SKILL_NAME} {flags + ' ' if flags else ''}-- {shlex.join(argv)}"
        where = "run in a shell; it writes [mcp_servers.model-serving] to ~/.codex/config.toml"
    elif client == "vscode":
        text = json.dumps({"servers": {SKILL_NAME: {"type": "stdio", **entry}}}, indent=2)
        where = ".vscode/mcp.json (GitHub Copilot agent mode)"
    elif client in ("cursor", "claude-desktop", "gemini"):
        text = json.dumps({"mcpServers": {SKILL_NAME: entry}}, indent=2)
        where = {
            "cursor": ".cursor/mcp.json in the project, or ~/.cursor/mcp.json",
            "claude-desktop": "claude_desktop_config.json (merge into mcpServers), then restart the app",
            "gemini": ".gemini/settings.json in the project, or ~/.gemini/settings.json (merge into mcpServers)",
        }[client]
    else:
        raise InputError(f"Unknown MCP client {client!r}.", "Use claude-code, claude-desktop, codex, cursor, gemini or vscode.")
    return McpConfig(client=client, command=argv, text=text, where=where)
