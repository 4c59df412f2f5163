"""The model-serving Agent Skill: fetch upstream docs, condense them into reference tables, check drift,
validate and install the skill, and serve it over MCP.

Layout: `sources` (which pages), `cache` (docs_cache/ and its manifest), `fetch` (HTTP), `htmltext`
(HTML to Markdown-like text), `condense` (facts and reference files), `drift` (what changed upstream),
`validate`, `install`, `cli` and `mcp_tools` (the two faces).
"""

from __future__ import annotations

import os
from pathlib import Path

from model_serving.errors import InputError

SKILL_NAME = "model-serving"
_REPO_ROOT = Path(__file__).resolve().parents[3]


def repo_root() -> Path | None:
    """The source checkout this package runs from, if any (an editable install or PYTHONPATH)."""
    return _REPO_ROOT if (_REPO_ROOT / "skills" / SKILL_NAME / "SKILL.md").is_file() else None


def skill_dir() -> Path:
    """Where the portable skill lives: MODEL_SERVING_SKILL_DIR, else the checkout's skills/model-serving."""
    env = os.environ.get("MODEL_SERVING_SKILL_DIR")
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / "SKILL.md").is_file():
            raise InputError(f"MODEL_SERVING_SKILL_DIR={env} has no SKILL.md.", "Point it at the skills/model-serving folder of a model-serving checkout.")
        return path
    root = repo_root()
    if root is None:
        raise InputError(
            "The model-serving skill folder was not found next to the installed package.",
            "Set MODEL_SERVING_SKILL_DIR to the skills/model-serving folder of a model-serving checkout.",
        )
    return root / "skills" / SKILL_NAME


def default_cache_dir(home: Path) -> Path:
    """The checkout's docs_cache/ when running from a checkout, else one under the state home."""
    root = repo_root()
    return root / "docs_cache" if root is not None else home / "docs_cache"
