"""Every benchmark script writes its result through the one metadata helper, stating its model and workload, and publish knows it."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
HELPERS = {"_bench_meta.py", "_peer_evidence.py", "publish.py"}
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name not in HELPERS)


def _writes(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) in ("write_report", "run_metadata")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_script_states_its_model_and_workload(script: Path) -> None:
    calls = _writes(ast.parse(script.read_text(encoding="utf-8")))
    assert calls, f"{script.name} writes no result through benchmarks/_bench_meta.py (write_report)"
    for call in calls:
        named = {k.arg for k in call.keywords}
        assert {"model", "workload"} <= named, f"{script.name}: {ast.unparse(call.func)} without model= and workload= (line {call.lineno})"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_publish_knows_the_result_a_script_writes(script: Path) -> None:
    spec = importlib.util.spec_from_file_location("publish", BENCHMARKS / "publish.py")
    assert spec and spec.loader
    publish = importlib.util.module_from_spec(spec)
    sys.modules["publish"] = publish
    spec.loader.exec_module(publish)
    outs = re.findall(r'"results" / "([\w.-]+)\.json"', script.read_text(encoding="utf-8"))
    assert outs, f"{script.name} names no default result file under benchmarks/results"
    for stem in outs:
        assert stem in publish.SCRIPTS and stem in publish.SECTIONS, f"benchmarks/publish.py has no section for {stem}.json ({script.name})"
