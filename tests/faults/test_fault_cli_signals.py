"""SIGTERM and kill -9 of a real `model-serving quantize` / `export` process, mid-step.

SIGTERM: one line says what stopped and what was cleaned, the exit is non-zero, nothing is left.
kill -9: the CLI cannot clean up, but its worker dies with it (parent-death signal), and the next
run of the step, or `clean`, removes the partial it left.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from fault_kit import CONVERTER, QUANTIZE_WORKER, Cli, children_of_ours, partials, wait_for
from quant_helpers import place


def _quantize(tmp_path: Path, f16: Path) -> Cli:
    return Cli(tmp_path / "home", "--root", str(tmp_path), "quantize", str(f16), "Q4_K_M", "--no-verify")


def _export(tmp_path: Path, checkpoint: Path) -> Cli:
    return Cli(tmp_path / "home", "--root", str(tmp_path), "--root", str(checkpoint.parent), "export", str(checkpoint),
               "-o", str(tmp_path / "tiny-f16.gguf"))


def _mid_quantize(cli: Cli, tmp_path: Path) -> None:
    cli.wait_line("Quantizing tensor")
    assert children_of_ours(str(tmp_path), (QUANTIZE_WORKER,)), "the worker is running"


def _mid_export(cli: Cli, tmp_path: Path) -> None:
    cli.wait_line("preflight")
    wait_for(lambda: children_of_ours(str(tmp_path), (CONVERTER,)), 180, "the converter to start")


@pytest.mark.parametrize("step", ["quantize", "export"])
def test_sigterm_stops_cleans_and_says_so(step: str, f16_source: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    if step == "quantize":
        f16 = place(f16_source, tmp_path)
        cli = _quantize(tmp_path, f16)
        _mid_quantize(cli, tmp_path)
    else:
        cli = _export(tmp_path, tiny_checkpoint)
        _mid_export(cli, tmp_path)
    cli.proc.send_signal(signal.SIGTERM)
    code, lines = cli.finish()
    assert code == 128 + signal.SIGTERM
    assert lines[-1].startswith("stopped by SIGTERM: ") and lines[-1].endswith("was cancelled; no partial output was kept."), lines[-3:]
    assert not children_of_ours(str(tmp_path))  # killed on cancel, before the CLI exited
    assert partials(tmp_path) == []
    assert not (tmp_path / "tiny-f16.gguf").exists() and not (tmp_path / "SmolLM2-135M-Instruct-Q4_K_M.gguf").exists()


def test_kill_9_of_quantize_the_worker_dies_and_the_next_run_cleans(f16_source: Path, tmp_path: Path) -> None:
    f16 = place(f16_source, tmp_path)
    cli = _quantize(tmp_path, f16)
    _mid_quantize(cli, tmp_path)
    os.kill(cli.proc.pid, signal.SIGKILL)
    assert cli.finish()[0] == -signal.SIGKILL
    wait_for(lambda: not children_of_ours(str(tmp_path)), 30, "the quantize worker to die with the CLI")
    left = partials(tmp_path)
    assert len(left) == 1 and left[0].startswith(".SmolLM2-135M-Instruct-Q4_K_M.gguf.")  # the CLI had no chance to clean
    again = _quantize(tmp_path, f16)
    code, _ = again.finish(timeout=300)
    assert code == 0
    assert partials(tmp_path) == []  # the next run of the step removed what the killed one left
    assert (tmp_path / "SmolLM2-135M-Instruct-Q4_K_M.gguf").exists()


def test_kill_9_of_export_the_converter_dies_and_clean_removes_the_partial(tiny_checkpoint: Path, tmp_path: Path) -> None:
    cli = _export(tmp_path, tiny_checkpoint)
    _mid_export(cli, tmp_path)
    os.kill(cli.proc.pid, signal.SIGKILL)
    assert cli.finish()[0] == -signal.SIGKILL
    wait_for(lambda: not children_of_ours(str(tmp_path)), 30, "the converter to die with the CLI")
    left = partials(tmp_path)
    assert [p for p in left if p.startswith(".tiny-f16.gguf.")] == left[:1]
    # the kill can also land while the CLI rewrites a state file (its hash cache): that partial is stale too
    assert all(p.startswith("home/state/.") for p in left[1:])
    plan = Cli(tmp_path / "home", "--root", str(tmp_path), "--json", "clean", str(tmp_path), "--plan")
    assert plan.finish()[0] == 0
    planned = json.loads(plan.proc.stdout.read())  # type: ignore[union-attr]
    assert planned["planned"] and sorted(planned["removed"]) == [str(tmp_path / p) for p in left] and partials(tmp_path) == left
    clean = Cli(tmp_path / "home", "--root", str(tmp_path), "--json", "clean", str(tmp_path))
    assert clean.finish()[0] == 0
    assert sorted(json.loads(clean.proc.stdout.read())["removed"]) == [str(tmp_path / p) for p in left]  # type: ignore[union-attr]
    assert partials(tmp_path) == []
