"""One deploy per name at a time: the second is refused naming the first, and one engine serves the name afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_runner import cli_in_process

from model_serving.deploy.claim import claim_path, deploy_claim
from model_serving.deploy.pipeline import deploy
from model_serving.errors import InputError
from model_serving.requests import DeployRequest
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.settings import Settings


def test_two_deploys_of_one_name_at_once_give_one_engine(settings: Settings, smollm2_gguf: Path) -> None:
    request = DeployRequest(source=str(smollm2_gguf), name="twin", quant="F16", target="embedded", bench=False, ctx_size=512, parallel=1)
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def one() -> None:
        start.wait()
        try:
            outcomes.append(deploy(settings, request))
        except InputError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        refused = [o for o in outcomes if isinstance(o, InputError)]
        done = [o for o in outcomes if not isinstance(o, InputError)]
        assert len(done) == 1 and len(refused) == 1, outcomes
        assert "Another deploy of 'twin' is running" in refused[0].cause and f"pid {os.getpid()}" in refused[0].cause
        assert "--name" in refused[0].next_step
        running = [m for m in list_models(settings) if m.name == "twin" and m.state == "running"]
        assert len(running) == 1  # one engine, and its record kept
        assert Path(done[0].manifest_path).is_file()
        assert not claim_path(settings, "twin").exists()  # released with the deploy
        assert not list(Path(done[0].manifest_path).parent.glob(".*.partial"))
    finally:
        for model in list_models(settings):
            stop_model(settings, model.name)


def test_a_claim_refuses_the_plan_and_the_cli_while_held(settings: Settings, smollm2_gguf: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    request = DeployRequest(source=str(smollm2_gguf), name="held", quant="F16", target="embedded", bench=False, plan=True)
    with deploy_claim(settings, "held", "another source"):
        with pytest.raises(InputError, match="Another deploy of 'held' is running") as refused:
            deploy(settings, request)
        assert "deploying another source" in refused.value.cause
        roots = [a for r in settings.roots for a in ("--root", str(r))]
        code, out, err = cli_in_process(capsys, *roots, "deploy", str(smollm2_gguf), "--name", "held", "--quant", "F16", "--target", "embedded", "--plan")
        assert code != 0 and "Another deploy of 'held' is running" in err and "Traceback" not in err + out
    assert deploy(settings, request).planned_only  # released: the plan goes through


def test_a_killed_deploys_claim_does_not_block(settings: Settings, smollm2_gguf: Path) -> None:
    # A deploy killed outright leaves its lock file; the kernel dropped the lock with the process.
    code = ("import os\nfrom model_serving.settings import Settings\nfrom model_serving.deploy.claim import deploy_claim\n"
            f"cm = deploy_claim(Settings.from_env(home={str(settings.home)!r}), 'gone', 'x')\ncm.__enter__()\nos._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    left = claim_path(settings, "gone")
    assert left.exists() and json.loads(left.read_text())["source"] == "x"
    request = DeployRequest(source=str(smollm2_gguf), name="gone", quant="F16", target="embedded", bench=False, plan=True)
    assert deploy(settings, request).name == "gone"
    with deploy_claim(settings, "gone", "y"):
        assert json.loads(left.read_text())["source"] == "y"
