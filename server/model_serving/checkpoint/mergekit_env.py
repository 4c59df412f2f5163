"""mergekit's own Python environment: a managed venv under the state directory's engines folder.

mergekit pins its own torch, transformers, peft and datasets ranges and runs as a separate process (`mergekit-yaml`),
so it never shares our venv. `install` creates the venv in resumable steps (each recorded in install.json; pip skips
what is there), pins the mergekit version and the CPU torch already on this machine (any other torch request pulls a
multi-GB CUDA build), and ends with a check that imports mergekit in that interpreter. `find` reads the record, so a
merge's preflight answers without importing anything. The venv's record and install are util/toolenv.py's; this module
keeps the pins and the script a merge runs.
"""

from __future__ import annotations

from pathlib import Path

from model_serving.util.toolenv import ToolEnvironment, ToolVenv

MERGEKIT_VERSION = "0.1.5"  # LGPL-3.0-only; run as a child process, never imported into our process
TORCH_CPU = "torch==2.13.0"
CHECK = "import sys, importlib.metadata as m, mergekit.merge; print(m.version('mergekit')); print(sys.executable)"
INSTALL_HINT = "Run `model-serving engines install mergekit` (minutes of pip, once; resumable)."


class MergekitEnvironment(ToolEnvironment):
    """Where mergekit runs: its venv's interpreter and `mergekit-yaml`, its version, and how the install went."""

    mergekit_yaml: str | None = None

    def program(self) -> str | None:
        return self.mergekit_yaml  # a merge runs the script, not the interpreter

    def finish(self, venv: Path) -> None:
        self.mergekit_yaml = str(venv / "bin" / "mergekit-yaml")


VENV = ToolVenv(folder="mergekit", label="mergekit", module="mergekit", packages=(f"mergekit=={MERGEKIT_VERSION}", TORCH_CPU),
                check=CHECK, hint=INSTALL_HINT, record=MergekitEnvironment)
home, save, find, require, check_python, install = VENV.home, VENV.save, VENV.find, VENV.require, VENV.check_python, VENV.install
