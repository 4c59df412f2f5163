"""The own-venv record mergekit and llm-compressor share (util/toolenv.py): what `find` and `require` read from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_serving.checkpoint import mergekit_env
from model_serving.errors import InputError
from model_serving.quantize import compressor_env
from model_serving.settings import Settings


def test_each_tool_is_installed_while_the_file_it_runs_is_there(settings: Settings, tmp_path: Path) -> None:
    script, python = tmp_path / "mergekit-yaml", tmp_path / "python"
    for tool, key, program in ((mergekit_env, "mergekit_yaml", script), (compressor_env, "python", python)):
        assert not tool.find(settings).installed and tool.INSTALL_HINT == tool.find(settings).next_step
        tool.home(settings).mkdir(parents=True)
        row = {"installed": True, "python": str(python), "version": "1", key: str(program),
               "steps": [{"step": "venv", "state": "done", "detail": "v"}]}  # the shape install.json has always had
        (tool.home(settings) / "install.json").write_text(json.dumps(row), encoding="utf-8")
        with pytest.raises(InputError, match="is not installed: .* is gone"):
            tool.require(settings)
        program.write_text("", encoding="utf-8")
        found = tool.require(settings)
        assert found.installed and found.steps[0].state == "done" and type(found).__name__ in ("MergekitEnvironment", "CompressorEnvironment")
    assert mergekit_env.find(settings).mergekit_yaml == str(script)
    with pytest.raises(InputError, match="^llm-compressor is not installed"):
        python.unlink()
        compressor_env.require(settings)
