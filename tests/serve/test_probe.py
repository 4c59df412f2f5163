"""The shared probe checks, on the replies an engine can give: each problem is found, and a good reply passes."""

from __future__ import annotations

from model_serving.serve import probe_checks as probe


def _result(reply: probe.Reply, expected: int | None = 20) -> probe.ProbeResult:
    return probe.result("embedded", "m", reply, expected_prompt_tokens=expected, max_tokens=96, messages=probe.PROBE_MESSAGES, seconds=0.5)


def test_an_answer_that_stops_and_saw_every_prompt_token_passes() -> None:
    result = _result(probe.Reply(answer="Paris.", finish_reason="stop", prompt_tokens=20, completion_tokens=4, decode_seconds=0.1))
    assert result.ok and result.problems == [] and result.truncated is False and result.double_bos is False
    assert result.tokens_per_second == 40.0 and result.prompt == probe.PROBE_MESSAGES[-1]["content"]


def test_each_failure_is_named() -> None:
    cases = {
        "empty answer": probe.Reply(answer="  ", finish_reason="stop", prompt_tokens=20),
        "did not stop by itself": probe.Reply(answer="Paris, Paris, Paris", finish_reason="length", prompt_tokens=20),
        "leaked into the answer": probe.Reply(answer="Paris.<|im_end|>", finish_reason="stop", prompt_tokens=20, stop_tokens=["<|im_end|>"]),
        "truncated": probe.Reply(answer="Paris.", finish_reason="stop", prompt_tokens=12),
        "doubled BOS": probe.Reply(answer="Paris.", finish_reason="stop", prompt_tokens=21),
        "the template adds text": probe.Reply(answer="Paris.", finish_reason="stop", prompt_tokens=25),
    }
    for words, reply in cases.items():
        result = _result(reply)
        assert not result.ok and len(result.problems) == 1 and words in result.problems[0], (words, result.problems)
    assert _result(cases["truncated"]).truncated is True and _result(cases["doubled BOS"]).double_bos is True


def test_without_an_expected_count_only_the_answer_is_judged() -> None:
    result = _result(probe.Reply(answer="Paris.", finish_reason="stop", prompt_tokens=3), expected=None)
    assert result.ok and result.truncated is None and result.double_bos is None


def test_the_runtime_bos_replaces_the_templates_own() -> None:
    template = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    messages = [{"role": "user", "content": "hi"}]
    assert probe.jinja_prompt(template, messages, bos="<s>", eos="</s>", add_bos=True) == "<user>hi<assistant>"
    assert probe.jinja_prompt(template, messages, bos="<s>", eos="</s>", add_bos=False) == "<s><user>hi<assistant>"
    with_system = probe.jinja_prompt(template, messages, bos="<s>", eos="</s>", add_bos=True, system="be brief")
    assert with_system == "<system>be brief<user>hi<assistant>"
    counted = probe.expected_tokens(template, messages, lambda text, add_bos: [0] * (len(text) + add_bos), bos="<s>", eos="</s>", add_bos=True)
    assert counted == len("<user>hi<assistant>") + 1
