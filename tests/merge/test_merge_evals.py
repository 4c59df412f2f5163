"""The merge measured against each input on the user's eval set (`merge --eval-set EVALS.jsonl`), as `eval` compares two
versions: each served in turn, asked greedily, pass rates per check kind and reference agreement with intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_serving.checkpoint.mergekit_env import MergekitEnvironment
from model_serving.errors import InputError
from model_serving.jobs import Progress
from model_serving.requests import MergeRequest
from model_serving.serve.embedded.engine import list_models
from model_serving.settings import Settings
from model_serving.verbs import merge_adapter

# The wired base answers any question with the same short answer ("Paris"), so each input and the merge pass the same
# cases: three of the four contains cases, the exact and the regex ones, and agree with the reference in part.
CASES = [{"prompt": "What is the capital of France?", "contains": "Paris"}, {"prompt": "Name the capital of France.", "contains": "Paris"},
         {"prompt": "Where is the Louvre?", "contains": ["Paris"]}, {"prompt": "What is the capital of England?", "contains": "London"},
         {"prompt": "Capital of France, one word.", "expected": "Paris"}, {"prompt": "The French capital?", "regex": "(?i)paris"},
         {"prompt": "Tell me about the capital of France.", "reference": "The capital of France is Paris."}]


def write_set(path: Path, cases: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


def test_a_bad_eval_line_is_refused_before_the_merge(settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path) -> None:
    bad = write_set(tmp_path / "evals.jsonl", [CASES[0], {"prompt": "no check"}])
    req = MergeRequest(method="slerp", models=[str(tune_a), str(tune_b)], weight=[0.5], eval_set=str(bad), output=str(tmp_path / "merged"))
    with pytest.raises(InputError, match="line 2"):
        merge_adapter(settings, req, Progress())
    assert not (tmp_path / "merged").exists() and not (tmp_path / "merged.merge.json").exists()


@pytest.mark.slow
def test_the_merge_is_compared_with_each_input_on_the_eval_set(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path,
                                                             wired_tunes: tuple[Path, Path]) -> None:
    a, b = wired_tunes
    evals = write_set(tmp_path / "evals.jsonl", CASES)
    req = MergeRequest(method="slerp", models=[str(a), str(b)], weight=[0.5], eval_set=str(evals), verify=False, output=str(tmp_path / "merged"))
    done = merge_adapter(settings, req, Progress())
    assert done.quality is None and done.quality_error is None and done.eval_set == str(evals)
    assert [Path(e["input_path"]).name for e in done.evals or []] == [a.name, b.name]
    for e in done.evals or []:
        measures = {c["measure"]: c for c in e["comparisons"]}
        assert set(measures) == {"pass rate: contains", "pass rate: expected", "pass rate: regex", "reference agreement (token F1)"}
        contains = measures["pass rate: contains"]
        assert contains["candidate"]["value"] == contains["baseline"]["value"] == 0.75 and contains["candidate"]["n"] == 4
        assert all(len(c["candidate"]["interval"]) == 2 for c in e["comparisons"] if c["measure"].startswith("pass rate"))  # Wilson
        assert e["verdict"] == "not distinguishable", e["summary"]
    assert not [m for m in list_models(settings) if m.state == "running"]  # every engine it started is stopped
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # the scratch GGUFs are gone
