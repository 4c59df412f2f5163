"""A redeploy of an unchanged source reuses the version that serves it: the match rule, the plan, and real deploys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model_serving.deploy import reuse
from model_serving.deploy.pipeline import deploy
from model_serving.lifecycle import store
from model_serving.lifecycle.store import Serving, Version
from model_serving.requests import DeployRequest
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.settings import Settings
from model_serving.util.filehash import HashCache

SETTINGS = Serving(quant="Q8_0", ctx_size=2048, parallel=4)


def version(n: int, *, target: str = "embedded", sha: str | None = "a", serving: Serving | None = SETTINGS, state: str = "serving") -> Version:
    return Version.model_validate({"n": n, "served_as": store.served_as("m", n, target), "target": target, "source": "src", "source_sha256": sha,
                                   "out_dir": f"/d/m@{n}", "created_at": store.now(), "serving": serving, "state": state})


def test_the_match_rule_same_source_bytes_same_settings_same_engine() -> None:
    book = store.VersionBook(name="m", live=1, versions=[
        version(1), version(2, serving=SETTINGS.model_copy(update={"ctx_size": 4096})), version(3, target="ollama"),
        version(4, serving=None), version(5, sha=None)])
    same = [(v.n if v else None) for v in (
        store.same_version(book, "embedded", SETTINGS, lambda v: "a"),
        store.same_version(book, "embedded", SETTINGS.model_copy(update={"ctx_size": 4096}), lambda v: "a"),
        store.same_version(book, "ollama", SETTINGS, lambda v: "a"),
        store.same_version(book, "embedded", SETTINGS, lambda v: "b"),  # other source bytes
        store.same_version(book, "embedded", SETTINGS.model_copy(update={"chat_template_sha256": "t"}), lambda v: "a"),
        store.same_version(book, "vllm", SETTINGS, lambda v: "a"),
        store.same_version(None, "embedded", SETTINGS, lambda v: "a"))]
    assert same == [1, 2, 3, None, None, None, None]  # 4 (settings unknown) and 5 (source hash unknown) never match
    book.versions.append(version(6))
    assert store.same_version(book, "embedded", SETTINGS, lambda v: "a").n == 6  # type: ignore[union-attr]  # the newest
    book.versions[-1].state = book.versions[0].state = "pruned"
    assert store.same_version(book, "embedded", SETTINGS, lambda v: "a") is None
    asked: list[str | None] = []
    store.same_version(store.VersionBook(name="m", versions=[version(1)]), "embedded", SETTINGS, lambda v: asked.append(v.out_dir) or "a")
    assert asked == ["/d/m@1"]  # the source is hashed where that version was built (the default model's checkpoint)


def test_a_record_written_before_settings_were_kept_loads_and_is_never_reused(settings: Settings) -> None:
    row = version(1).model_dump(mode="json", by_alias=True)
    del row["serving"]
    store.path(settings, "m").write_text(json.dumps({"name": "m", "live": 1, "versions": [row]}), encoding="utf-8")
    book = store.require(settings, "m")
    assert book.get(1).serving is None and store.same_version(book, "embedded", SETTINGS, lambda v: "a") is None


def served_as_is(settings: Settings, gguf: Path, request: DeployRequest, *, sha: str | None = None) -> Version:
    """Version 1 as a deploy of `gguf` as it is records it (deploy/versioning.py), its engine since stopped."""
    digest = HashCache(settings.state_dir).sha256(gguf)
    return Version(n=1, served_as="smol", target="embedded", source=str(gguf), source_sha256=digest, artifact=str(gguf),
                   artifact_sha256=sha or digest, out_dir=str(settings.roots[0] / "deployments" / "smol"), created_at=store.now(),
                   serving=reuse.serving(settings, request, None, None, None))


def test_the_plan_starts_a_stopped_version_again_and_a_changed_setting_makes_a_new_one(settings: Settings, smollm2_gguf: Path) -> None:
    asked = DeployRequest(source=str(smollm2_gguf), name="smol", target="embedded", plan=True)
    store.record_deploy(settings, "smol", served_as_is(settings, smollm2_gguf, asked), live=True)
    again = deploy(settings, asked)
    said = "already served as smol@1 (same source and settings): reused"
    assert (again.name, again.version, again.live, again.reused) == ("smol", 1, True, said)
    steps = {s.step: s for s in again.plan}
    assert steps["register"].action == "run" and "its engine is stopped" in steps["register"].detail and said in steps["quantize"].detail
    assert set(steps) == {"quantize", "register", "bench", "manifest"} and steps["quantize"].action == "skip"

    for changed in ({"ctx_size": 1024}, {"parallel": 2}, {"completions": True}, {"replace": True}):
        other = deploy(settings, asked.model_copy(update=changed))
        assert other.reused is None and other.version == 2, changed

    with store.update(settings, "smol") as book:
        book.versions = [served_as_is(settings, smollm2_gguf, asked, sha="0" * 64)]  # the served file changed since
    assert deploy(settings, asked).reused is None


@pytest.mark.slow
def test_deploying_an_unchanged_source_twice_gives_one_version_and_one_engine(settings: Settings, smollm2_gguf: Path) -> None:
    small = {"source": str(smollm2_gguf), "name": "smol", "target": "embedded", "ctx_size": 512, "parallel": 1}
    try:
        one = deploy(settings, DeployRequest(bench=False, **small))
        first = {m.name: m.pid for m in list_models(settings) if m.state == "running"}
        built = json.loads(Path(one.manifest_path or "").read_text(encoding="utf-8"))
        again = deploy(settings, DeployRequest(bench=True, bench_requests=2, concurrency=1, **small))
        assert (again.name, again.version, again.live) == ("smol", 1, True) and again.reused and "smol@1" in again.reused
        assert {m.name: m.pid for m in list_models(settings) if m.state == "running"} == first  # the same engine, no second
        assert [(s.step, s.status) for s in again.steps] == [("register", "reused"), ("bench", "done")] and again.answer and again.verdicts
        book = store.require(settings, "smol")
        assert [v.n for v in book.versions] == [1] and book.get(1).bench is not None
        kept = json.loads(Path(again.manifest_path or "").read_text(encoding="utf-8"))
        assert again.manifest_path == one.manifest_path and kept["artifacts"] == built["artifacts"]

        stop_model(settings, "smol")  # `serve stop`: the next unchanged deploy starts the same version again
        restarted = deploy(settings, DeployRequest(bench=False, **small))
        assert (restarted.version, restarted.reused) == (1, again.reused) and [(s.step, s.status) for s in restarted.steps] == [("register", "done")]
        assert [m.name for m in list_models(settings) if m.state == "running"] == ["smol"]
        assert store.require(settings, "smol").get(1).bench == book.get(1).bench  # a rerun without a bench keeps the one it had

        changed = deploy(settings, DeployRequest(bench=False, **{**small, "ctx_size": 1024}))
        assert (changed.name, changed.version, changed.live, changed.reused) == ("smol@2", 2, False, None)
        assert sorted(m.name for m in list_models(settings) if m.state == "running") == ["smol", "smol@2"]
        assert [v.n for v in store.require(settings, "smol").versions] == [1, 2]
    finally:
        for model in list_models(settings):
            stop_model(settings, model.name)


@pytest.mark.slow
def test_an_unchanged_redeploy_on_ollama_reuses_its_tag(ollama_settings: Settings, ollama_double, smollm2_gguf: Path) -> None:  # noqa: ANN001
    from model_serving.serve.ollama.client import OllamaClient

    request = DeployRequest(source=str(smollm2_gguf), name="smol", target="ollama", bench=False)
    one = deploy(ollama_settings, request)
    with OllamaClient(ollama_settings) as client:
        tags = sorted(m.name for m in client.list())
    again = deploy(ollama_settings, request)
    assert (again.name, again.version, again.live) == ("smol", 1, True) and again.reused and again.answer == one.answer
    assert [(s.step, s.status) for s in again.steps] == [("register", "reused")]
    with OllamaClient(ollama_settings) as client:
        assert sorted(m.name for m in client.list()) == tags  # no smol:v2
        client.delete("smol:v1")  # the version's own tag gone: its blobs may be too, so a new version is made
    assert deploy(ollama_settings, request).version == 2


@pytest.mark.slow
def test_the_plans_source_hash_is_the_one_the_export_records(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The match compares a hash taken before any step with the one a step recorded: the two must be one computation."""
    from model_serving.checkpoint.export import export_gguf
    from model_serving.deploy.source import find_source

    exported = export_gguf(settings, str(tiny_checkpoint), str(tmp_path / "tiny-f16.gguf"))
    assert reuse.source_sha256(settings, find_source(settings, str(tiny_checkpoint), None, "F16"), None) == exported.source_sha256
    default = find_source(settings, None, None, "Q8_0")
    assert reuse.source_sha256(settings, default, tmp_path) is None  # its checkpoint is not built there
    built = tmp_path / "built"
    shutil.copytree(tiny_checkpoint, built / f"{default.model_name.lower()}-hf")  # where prepare builds it, as DeployPlan.checkpoint says
    assert reuse.source_sha256(settings, default, built) == exported.source_sha256


def test_a_version_built_under_another_root_is_not_reused(settings: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    # another checkout's deployments share the state folder; its version's folder is outside this install's roots
    asked = DeployRequest(source=str(smollm2_gguf), name="smol", target="embedded", plan=True)
    elsewhere = served_as_is(settings, smollm2_gguf, asked).model_copy(update={"out_dir": str(tmp_path.parent / "other-checkout" / "smol")})
    store.record_deploy(settings, "smol", elsewhere, live=True)
    again = deploy(settings, asked)
    assert again.reused is None and again.version == 2
