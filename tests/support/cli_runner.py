"""Run the CLI in this process, for the face tests."""

from __future__ import annotations

import pytest


def cli_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `model-serving ARGS` in this process: (exit code, stdout, stderr)."""
    from model_serving.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
