"""The user's eval set (EVALS.jsonl) and how one answer is checked against one line of it.

One JSON object per line: `prompt` (or `messages`, an OpenAI chat list) and exactly one check:
- `expected`: the answer, exactly (surrounding whitespace aside);
- `contains`: a string, or a list of strings any of which must appear (case-insensitive);
- `regex`: a pattern the answer must match somewhere (`re.search`);
- `reference`: a reference output; the answer's agreement with it is a score in [0, 1], token F1.
Optional: `id` (default: the line number) and `max_tokens`.

Reference agreement is token F1 (SQuAD's measure: lower case, punctuation dropped, the shared bag of words over both
lengths), not exact match: two models' free answers almost never match to the character, so exact match would read 0
for both versions and could not tell them apart, while F1 credits the words an answer shares with the reference.

The file is untrusted input: its size, its line count and every field are bounded, a bad line is refused with its
number, and a regex is refused when it is long or nests a quantifier inside a quantified group (the shape that
backtracks exponentially); answers are capped too, so a check cannot run away.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model_serving.errors import InputError
from model_serving.quantize.quality import default_prompts

CheckKind = Literal["expected", "contains", "regex", "reference"]
CHECK_KINDS: tuple[CheckKind, ...] = ("expected", "contains", "regex", "reference")
PASS_FAIL_KINDS: tuple[CheckKind, ...] = ("expected", "contains", "regex")
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_CASES = 1000
MAX_TEXT = 20_000
MAX_REGEX = 512
MAX_ANSWER_CHARS = 16_384  # what a check reads of an answer: max_tokens bounds it anyway, this bounds a regex's work
DEFAULT_MAX_TOKENS = 64
# A quantified group whose body ends in a quantifier, e.g. (a+)+ or (\w+\s?)*: exponential backtracking on a near miss.
NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}]\)(?:[+*]|\{\d*,)")


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_TEXT)


class EvalCase(BaseModel):
    """One line of the set."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(default="", max_length=200)
    prompt: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    messages: list[Message] | None = Field(default=None, min_length=1, max_length=64)
    expected: str | None = Field(default=None, max_length=MAX_TEXT)
    contains: list[str] | None = Field(default=None, min_length=1, max_length=32)
    regex: str | None = Field(default=None, min_length=1, max_length=MAX_REGEX)
    reference: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    max_tokens: int | None = Field(default=None, ge=1, le=1024)

    @model_validator(mode="before")
    @classmethod
    def _one_string_contains(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("contains"), str):
            return {**data, "contains": [data["contains"]]}
        return data

    @model_validator(mode="after")
    def _one_prompt_one_check(self) -> EvalCase:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        given = [k for k in CHECK_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one check of {', '.join(CHECK_KINDS)} (found {', '.join(given) or 'none'})")
        if self.contains is not None and not all(0 < len(s) <= 2000 for s in self.contains):
            raise ValueError("each contains string must be 1 to 2000 characters")
        if self.regex is not None:
            compile_regex(self.regex)
        return self

    @property
    def kind(self) -> CheckKind:
        return next(k for k in CHECK_KINDS if getattr(self, k) is not None)

    def chat(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


def compile_regex(pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_REGEX:
        raise ValueError(f"regex is longer than {MAX_REGEX} characters")
    if NESTED_QUANTIFIER.search(pattern):
        raise ValueError("regex nests a quantifier inside a quantified group (e.g. (a+)+), which can backtrack without end; "
                         "write it without the outer quantifier")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"regex does not compile: {exc}") from None


def _line_error(number: int, path: Path, problem: str) -> InputError:
    return InputError(f"{path.name} line {number}: {problem}.",
                      "Fix that line: one JSON object with prompt (or messages) and one of expected, contains, regex or reference.")


def _problem(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where + ' ' if where else ''}{str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def load_eval_set(path: Path) -> list[EvalCase]:
    """Every case of the file, in order; the first bad line is refused with its number."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path.name} is {size} bytes; an eval set may hold at most {MAX_FILE_BYTES}.", "Split it, or keep the cases that matter.")
    cases: list[EvalCase] = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            raise _line_error(number, path, f"the line is longer than {MAX_LINE_BYTES} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _line_error(number, path, f"not a JSON object ({str(exc)[:120]})") from None
        if not isinstance(data, dict):
            raise _line_error(number, path, "not a JSON object")
        try:
            case = EvalCase.model_validate(data)
        except ValidationError as exc:
            raise _line_error(number, path, _problem(exc)) from None
        cases.append(case if case.id else case.model_copy(update={"id": f"line {number}"}))
        if len(cases) > MAX_CASES:
            raise _line_error(number, path, f"the set holds more than {MAX_CASES} cases")
    if not cases:
        raise InputError(f"{path.name} holds no cases.", "Write one JSON object per line, e.g. {\"prompt\": \"2+2?\", \"contains\": \"4\"}.")
    return cases


def builtin_set() -> list[EvalCase]:
    """The quality prompts every quantization and merge is measured on (quantize/data/quality_prompts.json).

    Each is a regex check that reads the prompt's expected words as quality.is_correct does (any of them, whole word, any case),
    so a version passes a built-in case exactly when the quantization check would call its answer right.
    """
    return [EvalCase(id=f"builtin {i}", prompt=p.prompt, regex="(?i)(?<!\\w)(?:" + "|".join(re.escape(w) for w in p.expect) + ")(?!\\w)")
            for i, p in enumerate(default_prompts(), start=1) if p.expect]


def _normal_tokens(text: str) -> list[str]:
    table = str.maketrans({c: " " for c in string.punctuation})
    return text.lower().translate(table).split()


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's token F1: overlap of the two bags of words over their sizes; 1.0 when both are empty."""
    a, r = _normal_tokens(answer), _normal_tokens(reference)
    if not a or not r:
        return float(a == r)
    shared = sum((Counter(a) & Counter(r)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(a), shared / len(r)
    return 2 * precision * recall / (precision + recall)


def check(case: EvalCase, answer: str) -> tuple[bool | None, float | None]:
    """(passed, score): passed for expected/contains/regex, score (token F1) for reference."""
    text = answer[:MAX_ANSWER_CHARS]
    if case.expected is not None:
        return text.strip() == case.expected.strip(), None
    if case.contains is not None:
        lowered = text.lower()
        return any(s.lower() in lowered for s in case.contains), None
    if case.regex is not None:
        return compile_regex(case.regex).search(text) is not None, None
    return None, token_f1(text, case.reference or "")
