"""EVALS.jsonl: parsed defensively, each check kind applied as documented, the built-in set read like the quality check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_serving.errors import InputError
from model_serving.lifecycle.evalset import EvalCase, builtin_set, check, load_eval_set, token_f1
from model_serving.quantize.quality import default_prompts, is_correct


def write(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def test_each_kind_parses_and_checks(tmp_path: Path) -> None:
    cases = load_eval_set(write(tmp_path / "e.jsonl", [
        {"prompt": "2+2?", "expected": "4"},
        {"prompt": "capital?", "contains": "Paris", "id": "paris"},
        {"messages": [{"role": "system", "content": "Be short."}, {"role": "user", "content": "hi"}], "regex": r"^h\w+", "max_tokens": 8},
        "",
        {"prompt": "say it", "reference": "the quick brown fox"},
    ]))
    assert [c.kind for c in cases] == ["expected", "contains", "regex", "reference"]
    assert [c.id for c in cases] == ["line 1", "paris", "line 3", "line 5"]
    assert check(cases[0], " 4\n") == (True, None) and check(cases[0], "4.") == (False, None)
    assert check(cases[1], "It is PARIS.") == (True, None) and check(cases[1], "Lyon") == (False, None)
    assert check(cases[2], "hello") == (True, None) and check(cases[2], "oh hello") == (False, None)
    assert cases[2].chat()[0] == {"role": "system", "content": "Be short."}
    assert check(cases[3], "the quick brown fox") == (None, 1.0)


@pytest.mark.parametrize(("line", "said"), [
    ("{not json", "not a JSON object"),
    ('["a list"]', "not a JSON object"),
    ('{"prompt": "x"}', "exactly one check"),
    ('{"prompt": "x", "expected": "a", "contains": "b"}', "exactly one check"),
    ('{"expected": "a"}', "exactly one of prompt or messages"),
    ('{"prompt": "x", "regex": "(a+)+$"}', "nests a quantifier"),
    ('{"prompt": "x", "regex": "(unclosed"}', "does not compile"),
    ('{"prompt": "x", "expected": "a", "temperature": 1}', "temperature"),
    ('{"prompt": "x", "expected": "a", "max_tokens": 0}', "max_tokens"),
])
def test_a_bad_line_is_refused_with_its_number(tmp_path: Path, line: str, said: str) -> None:
    path = write(tmp_path / "e.jsonl", [{"prompt": "ok", "expected": "ok"}, "", line])
    with pytest.raises(InputError) as caught:
        load_eval_set(path)
    assert caught.value.cause.startswith("e.jsonl line 3: ") and said in caught.value.cause
    assert "prompt (or messages)" in caught.value.next_step


def test_size_limits(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no cases"):
        load_eval_set(write(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(InputError, match="line 2: the line is longer"):
        load_eval_set(write(tmp_path / "long.jsonl", [{"prompt": "a", "expected": "b"}, {"prompt": "a" * 70_000, "expected": "b"}]))
    with pytest.raises(InputError, match="line 1: .*regex"):
        load_eval_set(write(tmp_path / "re.jsonl", [{"prompt": "a", "regex": "a" * 600}]))


def test_token_f1() -> None:
    assert token_f1("The cat sat.", "the cat sat") == 1.0
    assert token_f1("a b c d", "a b") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert token_f1("x y", "a b") == 0.0 and token_f1("", "") == 1.0 and token_f1("", "a") == 0.0
    assert token_f1("a a b", "a b b") == pytest.approx(2 / 3)  # bags, not sets


def test_the_builtin_set_checks_answers_as_the_quality_check_does() -> None:
    cases, prompts = builtin_set(), [p for p in default_prompts() if p.expect]
    assert [c.prompt for c in cases] == [p.prompt for p in prompts] and all(c.kind == "regex" for c in cases)
    for answer in ("Paris", "paris.", "Parisian", "It has 8 legs", "88", "carbon dioxide", "CO2!", "twelve", "100 degrees", "1000"):
        for case, prompt in zip(cases, prompts, strict=True):
            assert check(case, answer)[0] == is_correct(answer, prompt.expect), (answer, prompt.prompt)


def test_a_contains_list_passes_on_any() -> None:
    case = EvalCase(prompt="q", contains=["alpha", "beta"])
    assert check(case, "BETA") == (True, None) and check(case, "gamma") == (False, None)
