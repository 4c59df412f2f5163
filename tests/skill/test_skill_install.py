"""`skill install` into each agent's folder, `mcp-config` for each client, and the plugin manifest."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from skill_helpers import REPO, SKILL

from model_serving.cli import main as cli
from model_serving.errors import InputError
from model_serving.skill.install import SKILL_DIRS, install_skill, mcp_config, skill_target

EXPECTED_DIRS = {
    ("claude-code", "project"): ".claude/skills", ("claude-code", "user"): ".claude/skills",
    ("codex", "project"): ".agents/skills", ("codex", "user"): ".agents/skills",
    ("cursor", "project"): ".cursor/skills", ("cursor", "user"): ".cursor/skills",
    ("gemini", "project"): ".gemini/skills", ("gemini", "user"): ".gemini/skills",
    ("copilot", "project"): ".github/skills", ("copilot", "user"): ".copilot/skills",
}


@pytest.mark.parametrize(("agent", "scope"), sorted(EXPECTED_DIRS))
def test_install_puts_the_skill_where_each_agent_looks(agent: str, scope: str, tmp_path: Path) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    result = install_skill(SKILL, agent, scope, project=project, home=home)  # type: ignore[arg-type]
    base = project if scope == "project" else home
    target = base / EXPECTED_DIRS[(agent, scope)] / "model-serving"
    assert Path(result.path) == target and result.action == "installed"
    assert (target / "SKILL.md").read_bytes() == (SKILL / "SKILL.md").read_bytes()
    assert (target / "references" / "quantization.md").is_file()
    assert not (target / "evals").exists()  # evaluation data is not part of an installed skill
    assert install_skill(SKILL, agent, scope, project=project, home=home).action == "unchanged"  # type: ignore[arg-type]


def test_a_different_copy_is_replaced_only_with_force(tmp_path: Path) -> None:
    kw = {"project": tmp_path, "home": tmp_path / "home"}
    target = Path(install_skill(SKILL, "claude-code", "project", **kw).path)  # type: ignore[arg-type]
    (target / "SKILL.md").write_text("edited locally", encoding="utf-8")
    with pytest.raises(InputError, match="--force"):
        install_skill(SKILL, "claude-code", "project", **kw)  # type: ignore[arg-type]
    assert (target / "SKILL.md").read_text(encoding="utf-8") == "edited locally"
    assert install_skill(SKILL, "claude-code", "project", force=True, **kw).action == "updated"  # type: ignore[arg-type]
    assert (target / "SKILL.md").read_bytes() == (SKILL / "SKILL.md").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model-serving"]  # no staging folder left


def test_unknown_agent_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Unknown agent"):
        skill_target("emacs", "user", project=tmp_path, home=tmp_path)  # type: ignore[arg-type]
    assert set(SKILL_DIRS) == {a for a, _ in EXPECTED_DIRS}


def test_install_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main_group, ["--json", "skill", "install", "--agent", "codex", "--agent", "cursor", "--scope", "project", "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["action"] for r in rows] == ["installed", "installed"]
    assert (tmp_path / ".agents/skills/model-serving/SKILL.md").is_file() and (tmp_path / ".cursor/skills/model-serving/SKILL.md").is_file()


def test_mcp_config_for_each_client(tmp_path: Path) -> None:
    roots = [tmp_path]
    claude = mcp_config("claude-code", roots, launcher="uvx model-serving-mcp", scope="project", env={"OLLAMA_HOST": "http://127.0.0.1:11434"})
    words = shlex.split(claude.text)
    assert words[:5] == ["claude", "mcp", "add", "model-serving", "-s"] and words[5] == "project"
    assert words[words.index("--") + 1:] == ["uvx", "model-serving-mcp", "--root", str(tmp_path.resolve())]
    assert "-e" in words and "OLLAMA_HOST=http://127.0.0.1:11434" in words
    codex = shlex.split(mcp_config("codex", roots, launcher="uvx model-serving-mcp").text)
    assert codex[:4] == ["codex", "mcp", "add", "model-serving"] and codex[-2:] == ["--root", str(tmp_path.resolve())]
    for client in ("cursor", "claude-desktop", "gemini"):
        block = json.loads(mcp_config(client, roots).text)  # type: ignore[arg-type]
        entry = block["mcpServers"]["model-serving"]
        assert Path(entry["command"]).is_absolute() or entry["command"] == "uvx"
        assert entry["args"][-2:] == ["--root", str(tmp_path.resolve())]
    vscode = json.loads(mcp_config("vscode", roots).text)
    assert vscode["servers"]["model-serving"]["type"] == "stdio"


def test_mcp_config_cli_prints_the_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main_group, ["mcp-config", "--client", "claude-code", "--workspace", str(tmp_path)])
    assert result.exit_code == 0
    assert result.stdout.startswith("claude mcp add model-serving -s user -- ") and f"--root {tmp_path.resolve()}" in result.stdout


def test_plugin_manifest_bundles_server_and_skill() -> None:
    manifest = json.loads((REPO / ".claude-plugin" / "plugin.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "model-serving" and manifest["version"]
    servers = json.loads((REPO / ".mcp.json").read_text(encoding="utf-8"))["mcpServers"]
    assert "model-serving-mcp" in servers["model-serving"]["args"]
    assert (REPO / "skills" / "model-serving" / "SKILL.md").is_file()  # plugin skills live in skills/<name>/
