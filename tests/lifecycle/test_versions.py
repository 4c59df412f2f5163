"""Versions of one name: deployed beside the live one, listed, promoted, rolled back and pruned (real engines)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bare_model import GIVEN_MARKER, GIVEN_TEMPLATE, strip_template

from model_serving.deploy.pipeline import deploy
from model_serving.errors import InputError
from model_serving.lifecycle import store
from model_serving.lifecycle.history import history, prune
from model_serving.lifecycle.resolve import resolve
from model_serving.lifecycle.switch import canary, promote, rollback
from model_serving.requests import DeployRequest
from model_serving.serve.ollama.client import OllamaClient
from model_serving.serve.probe_checks import PROBE_MESSAGES
from model_serving.settings import Settings

GREEDY = {"temperature": 0, "seed": 0, "num_predict": 48}
# SmolLM2 answers the probe question in English ("The capital of France is Paris."); told so, it answers in French
FRENCH = GIVEN_TEMPLATE.replace(GIVEN_MARKER, "You always reply in French.")


def marker_model(smollm2_gguf: Path, folder: Path) -> tuple[Path, Path]:
    """The second version: SmolLM2's weights without their template, served with a template whose system line differs."""
    template = folder / "french.jinja"
    template.write_text(FRENCH, encoding="utf-8")
    return strip_template(smollm2_gguf, folder / "smol-bare.gguf"), template


def test_the_rollback_stack_and_references(settings: Settings) -> None:
    for n in (1, 2, 3):
        store.record_deploy(settings, "m", store.Version(n=n, served_as=store.served_as("m", n, "embedded"), target="embedded",
                                                         source=f"s{n}", created_at=store.now()), live=n != 3)
    book = store.require(settings, "m")
    assert (book.live, book.previous, [v.served_as for v in book.versions]) == (2, [1], ["m", "m@2", "m@3"])
    assert [p.until is not None for p in book.get(1).live_periods] == [True] and book.get(2).live_periods[-1].until is None
    assert store.split_ref("m@previous") == ("m", "previous") and store.split_ref("m:q8@12") == ("m:q8", "12")
    assert store.served_as("m:q8", 2, "ollama") == "m:q8-v2" and store.served_as("m", 2, "ollama") == "m:v2"
    assert resolve(settings, "m@live").n == 2 and resolve(settings, "m@previous").n == 1 and resolve(settings, "m@3").served_as == "m@3"
    assert resolve(settings, "m@3").base_url is None  # nothing runs it
    with pytest.raises(InputError, match="no version 7"):
        resolve(settings, "m@7")
    with pytest.raises(InputError, match="never deployed"):
        history(settings, "other")
    with pytest.raises(InputError, match="not served"):
        promote(settings, "m@3")
    planned = prune(settings, "m", keep=1, plan=True)
    assert [p.n for p in planned.pruned] == [1, 3] and planned.kept == ["m@2: live"]
    assert store.require(settings, "m").versions[0].state == "serving"  # a plan changes nothing


@pytest.mark.slow
def test_history_says_when_a_live_version_has_no_engine(settings: Settings) -> None:
    """A live version whose engine was stopped (serve stop) must not read as if it answered."""
    from model_serving.results import render

    store.record_deploy(settings, "m", store.Version(n=1, served_as="m", target="embedded", source="s1", created_at=store.now()), live=True)
    shown = render(history(settings, "m"))
    text = "\n".join([shown.headline, *(line.text for line in shown.lines)])
    assert "live @1" in text and "its engine is not running" in text


def test_versions_on_ollama_promote_rollback_prune(ollama_settings: Settings, ollama_double, smollm2_gguf: Path, tmp_path: Path) -> None:
    settings = ollama_settings
    bare, template = marker_model(smollm2_gguf, tmp_path)
    one = deploy(settings, DeployRequest(source=str(smollm2_gguf), name="smol", target="ollama", bench=False))
    two = deploy(settings, DeployRequest(source=str(bare), name="smol", target="ollama", chat_template=str(template), bench=False))
    assert (one.version, one.live) == (1, True)
    assert (two.name, two.version, two.live) == ("smol:v2", 2, False) and any("promote smol@2" in s for s in two.next_steps)
    assert Path(two.manifest_path or "").parent.name == "smol@2"
    with OllamaClient(settings) as client:
        assert {"smol:latest", "smol:v1", "smol:v2"} <= {m.name for m in client.list()}

        def ask(model: str) -> str:  # from a fresh load, as the switch's probe asks (lifecycle/probe.py)
            client.unload(model)
            return client.chat(model, PROBE_MESSAGES, options=GREEDY).content

        first, second = ask("smol"), ask("smol:v2")
        assert first != second, "the two versions must answer differently for the switch to show"
        with pytest.raises(InputError, match="routes a model name to one model only"):
            canary(settings, "smol@2", 10)

        promoted = promote(settings, "smol@2")
        assert (promoted.live, promoted.was_live) == (2, 1) and promoted.probe and promoted.probe.same
        assert ask("smol") == second

        back = rollback(settings, "smol")
        assert (back.live, back.was_live) == (1, 2) and back.probe and back.probe.same
        assert ask("smol") == first == back.probe.public_answer  # the old version's answer again
        assert {m.name for m in client.list()} >= {"smol:v1", "smol:v2"}  # every version keeps its blobs

    listed = history(settings, "smol")
    assert listed.live == 1 and listed.previous == []
    rows = {v.n: v for v in listed.versions}
    assert rows[1].source_sha256 and rows[2].source == str(bare) and rows[2].answer
    assert len(rows[1].live_periods) == 2 and rows[2].live_periods[0].until is not None

    planned = prune(settings, "smol", keep=1, plan=True)
    assert [p.n for p in planned.pruned] == [2] and planned.freed_bytes > 0 and Path(planned.pruned[0].removed[0]).exists()
    done = prune(settings, "smol", keep=1)
    assert done.freed_bytes == planned.freed_bytes and not Path(planned.pruned[0].removed[0]).exists()
    assert bare.exists()  # a GGUF deployed as it is stays where the user keeps it
    with OllamaClient(settings) as client:
        assert "smol:v2" not in {m.name for m in client.list()} and ask_ok(client)
    assert {v.n: v.state for v in history(settings, "smol").versions} == {1: "serving", 2: "pruned"}


def ask_ok(client: OllamaClient) -> bool:
    return bool(client.chat("smol", PROBE_MESSAGES, options=GREEDY).content)


def test_the_gateway_serves_a_version_with_the_template_it_was_deployed_with() -> None:
    from model_serving.serve.gateway import preset
    from model_serving.serve.registry import ServedModel

    common = {"source": "/m/smol.gguf", "port": 1, "pid": 1, "ctx_size": 512, "parallel": 1, "threads": 2, "started_at": "t", "log_path": "l"}
    models = [ServedModel(name="smol", base_url="u", **common),
              ServedModel(name="smol@2", base_url="u", chat_template_file="/m/french.jinja", **common)]  # type: ignore[arg-type]
    items, skipped = preset.entries(models)
    assert [e.name for e in items] == ["smol", "smol@2"] and skipped == []
    text = preset.render(items, 300)
    assert text.count("chat-template-file") == 1 and "[smol@2]\nmodel = /m/smol.gguf\nchat-template-file = /m/french.jinja\n" in text
