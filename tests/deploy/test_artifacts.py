"""The plan and the steps ask one reuse rule (util/artifact.Artifact): a plan never promises a reuse the step refuses.

Each case prepares the outputs of an earlier deploy (or spoils them), asks the plan what export and
quantize will do, then runs those very steps on the plan's context and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_serving.deploy.context import DeployContext, DeployResult
from model_serving.deploy.plan import make_plan
from model_serving.deploy.steps import STEPS
from model_serving.jobs import Progress
from model_serving.requests import DeployRequest
from model_serving.settings import Settings
from model_serving.util.artifact import Artifact
from model_serving.util.filehash import HashCache
from model_serving.util.paths import sha256_file

DONE = {"run": "done", "reuse": "reused"}


def planned_and_done(settings: Settings, request: DeployRequest) -> dict[str, tuple[str, str]]:
    """{step: (what the plan said, what the step did)} for the steps that write artifacts."""
    plan = make_plan(settings, request)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    ctx = DeployContext(settings=settings, request=request, plan=plan,
                        result=DeployResult(name=plan.name, target=plan.target, target_reason=plan.target_reason, plan=plan.steps))
    for name, step, _ in STEPS:
        if name in ("export", "quantize") and plan.action(name) != "skip":
            step(ctx, Progress())
    did = {s.step: s.status for s in ctx.result.steps}
    return {name: (plan.action(name), did[name]) for name in did}


def spoil_output(path: Path) -> None:
    """Same size, other bytes: the sidecar's output hash no longer holds (the stat-keyed cache sees a new mtime)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def drop_field(path: Path, field: str) -> None:
    record = json.loads(path.read_text())
    record.pop(field)
    path.write_text(json.dumps(record))


def set_field(path: Path, field: str, value: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))


@pytest.mark.slow
def test_the_plans_reuse_verdict_is_what_each_step_does(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    request = DeployRequest(source=str(tiny_checkpoint), name="tiny", quant="Q8_0", target="embedded", verify_quality=False,
                            bench=False, output=str(tmp_path / "d"))
    first = planned_and_done(settings, request)
    assert first == {"export": ("run", "done"), "quantize": ("run", "done")}
    assert planned_and_done(settings, request) == {"export": ("reuse", "reused"), "quantize": ("reuse", "reused")}

    quant = tmp_path / "d" / "tiny-Q8_0.gguf"
    sidecar = quant.with_name(quant.name + ".json")
    # Each spoils the quantized output or its record differently; before one rule, the plan promised a reuse in the
    # first two (it read neither the output's bytes nor the record's full shape) and the step then quantized again.
    for spoil in (lambda: spoil_output(quant), lambda: drop_field(sidecar, "ftype"), lambda: set_field(sidecar, "qtype", "Q4_0"),
                  lambda: set_field(sidecar, "imatrix", {"path": "m", "calibration": "c", "calibration_sha256": "0", "ctx_size": 1, "chunks": 1})):
        spoil()
        assert planned_and_done(settings, request) == {"export": ("reuse", "reused"), "quantize": ("run", "done")}

    f16 = tmp_path / "d" / "tiny-f16.gguf"
    spoil_output(f16)
    seen = planned_and_done(settings, request)
    assert seen["export"] == ("run", "done")
    planned, did = seen["quantize"]
    # The export's new hash is unknown to the plan, so it says run; the step may still find the same bytes and reuse.
    assert planned == "run" and did in ("done", "reused")


def test_an_artifact_is_reused_only_as_recorded(tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    out.write_bytes(b"GGUF" * 1000)
    art = Artifact(out, ".json", "output_sha256")
    assert art.recorded({"qtype": "Q8_0"}) is None  # no sidecar
    art.record({"qtype": "Q8_0", "input_sha256": "a", "output_sha256": sha256_file(out), "calibration": None})
    hashes = HashCache(tmp_path / "state")
    assert art.recorded({"qtype": "Q8_0", "input_sha256": "a"}, hashes) is not None
    assert art.recorded({"qtype": "Q8_0", "input_sha256": "b"}, hashes) is None  # another input
    assert art.recorded({"calibration": lambda used: used is None}, hashes) is not None
    assert art.recorded({"calibration": lambda used: used is not None}, hashes) is None
    assert not list(tmp_path.glob(".*.partial"))  # the sidecar went through a partial that is gone
    out.write_bytes(b"GGUF" * 999 + b"EVIL")
    assert art.recorded({"qtype": "Q8_0"}, hashes) is None  # the output changed since it was recorded

    folder = Artifact(tmp_path / "merged", ".merge.json", output_key=None, marker="config.json")
    folder.record({"base_sha256": "b"})
    assert folder.recorded({"base_sha256": "b"}) is None  # recorded, but the folder is not there
    with folder.written() as tmp:
        assert tmp.name.startswith(".merged.") and tmp.name.endswith(".partial") and tmp.is_dir()
        (tmp / "config.json").write_text("{}")
    assert folder.recorded({"base_sha256": "b"}) == {"base_sha256": "b"}
    assert folder.recorded({"base_sha256": "other"}) is None
