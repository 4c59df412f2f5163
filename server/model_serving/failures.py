"""Every failure that can reach a face, worded once: a cause and a next step.

`failure(exc, verb)` is the one table both faces (and the job runner) read: our own `ServingError`s pass
through, a refused input becomes the field, the rule and what to fix, and the exceptions of the libraries
and the OS that a user can cause (an unreachable service, the Hub switched off, a folder where a file
belongs) map to a cause and a next step. What the table does not know is a bug, and the face says so.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from model_serving.errors import InputError, ServingError
from model_serving.requests import (
    HUB_REPO_PATTERN,
    JOB_ID_PATTERN,
    LABEL_PATTERN,
    MODEL_NAME_PATTERN,
    NOT_FLAG,
    OLLAMA_NAME_PATTERN,
    QUANT_PATTERN,
    SERVED_NAME_PATTERN,
    VERSIONED_NAME_PATTERN,
    Request,
)

R = TypeVar("R", bound=Request)

# --- a refused input: the field, the rule it broke, and what to fix ---
PATTERN_RULES = {
    NOT_FLAG: "must not start with '-' (it would read as an option)",
    MODEL_NAME_PATTERN: "must be 1-64 characters of a-z 0-9 . _ : - starting with a letter or digit",
    SERVED_NAME_PATTERN: "must be a model name (a-z 0-9 . _ : -, starting with a letter or digit), or NAME@N for its version N",
    VERSIONED_NAME_PATTERN: "must be NAME, NAME@N (a version), NAME@live or NAME@previous",
    QUANT_PATTERN: "must be a quantization type such as Q4_K_M or Q8_0",
    HUB_REPO_PATTERN: "must be a Hub repo id USER/NAME (letters, digits, . _ -)",
    OLLAMA_NAME_PATTERN: "must be an Ollama name such as my-model:v1 (no spaces, no leading '-')",
    JOB_ID_PATTERN: "must be a taskId returned by a tool",
    LABEL_PATTERN: "must be letters, digits and . _ - only",
}


def _rule(err: Any) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    bounds = {"greater_than_equal": ">= {ge}", "less_than_equal": "<= {le}", "greater_than": "> {gt}", "less_than": "< {lt}",
              "string_too_short": "at least {min_length} character(s)", "string_too_long": "at most {max_length} characters",
              "too_short": "at least {min_length} item(s)", "too_long": "at most {max_length} items"}
    if kind in bounds:
        return "must be " + bounds[kind].format(**ctx)
    if kind == "string_pattern_mismatch":
        return PATTERN_RULES.get(ctx.get("pattern", ""), f"must match {ctx.get('pattern')}")
    if kind == "extra_forbidden":
        return "is not a parameter of this verb"
    if kind == "missing":
        return "is required"
    if kind == "value_error":
        return str(err.get("msg", "")).removeprefix("Value error, ")
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    return str(err.get("msg", "is invalid")).replace("Input should be", "must be")


def input_error(exc: ValidationError, verb: str = "") -> InputError:
    """A validation failure as field, rule and next step: the one wording both faces use."""
    problems = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in err["loc"])
        problems.append(f"{field} {_rule(err)}" if field else _rule(err) if err["type"] == "value_error" else f"input {_rule(err)}")
    again = f"call {verb} again" if verb else "try again"
    return InputError(f"Invalid input: {'; '.join(problems)}.", f"Fix {'that value' if len(problems) == 1 else 'those values'} and {again}.")


def validated(model: type[R], values: dict[str, Any], verb: str = "") -> R:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise input_error(exc, verb) from None


# --- the libraries' and the OS's exceptions a user can cause ---
# Keyed by root module and class name, so this floor imports none of those libraries; looked up along each exception's
# classes (most specific first) and then along its cause chain. {what} is the file or address the exception names.
_HUB_OFF = ("The Hugging Face Hub is switched off here (HF_HUB_OFFLINE is set) and this step needs it.",
            "Unset HF_HUB_OFFLINE once the Hub is reachable, or give a local folder or file instead of a Hub repo id.")
_UNREACHABLE = ("{what} could not be reached ({text}).",
                "Check the address (HF_ENDPOINT for the Hub, OLLAMA_HOST for Ollama) and the network, then run again.")
TABLE: dict[str, tuple[type[ServingError], str, str]] = {
    "huggingface_hub.OfflineModeIsEnabled": (ServingError, *_HUB_OFF),
    "huggingface_hub.LocalEntryNotFoundError": (ServingError, "{text}", "Connect to the Hub once (or unset HF_HUB_OFFLINE) to fetch it, or give a local path."),
    "httpx.TimeoutException": (ServingError, "{what} did not answer in time ({text}).", "Check that it is up and not overloaded, then run again."),
    "httpx.TransportError": (ServingError, *_UNREACHABLE),
    "requests.ConnectionError": (ServingError, *_UNREACHABLE),
    "requests.Timeout": (ServingError, "{what} did not answer in time ({text}).", "Check that it is up and not overloaded, then run again."),
    "ConnectionError": (ServingError, *_UNREACHABLE),
    "TimeoutError": (ServingError, "{what} did not answer in time ({text}).", "Check that it is up and not overloaded, then run again."),
    "IsADirectoryError": (InputError, "{what} is a folder where a file is expected.", "Give the file itself (e.g. the .gguf inside the folder)."),
    "NotADirectoryError": (InputError, "{what} is a file where a folder is expected.", "Give the folder that holds it."),
    "FileNotFoundError": (InputError, "{what} does not exist.", "Check the path (relative paths start at the current folder)."),
    "PermissionError": (InputError, "Permission denied on {what}.", "Give a path you may read (and write, for outputs), or fix its permissions."),
    "UnicodeDecodeError": (InputError, "A file that should be UTF-8 text is not ({text}).", "Check that the path names the right file."),
    "MemoryError": (ServingError, "The machine ran out of memory.", "Use a smaller quantization or context (ctx_size), or free memory, then run again."),
}
_ERRNO: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("The disk is full ({what}).", "Free space there (model-serving clean removes partial files), then run again."),
    errno.EROFS: ("{what} is on a read-only file system.", "Write somewhere else (output)."),
}


def _key(cls: type) -> str:
    root = cls.__module__.split(".")[0]
    root = {"httpx2": "httpx"}.get(root, root)
    return cls.__name__ if root == "builtins" else f"{root}.{cls.__name__}"


def _what(exc: BaseException) -> str:
    """The file or address an exception names: OSError's filename, an HTTP client's request URL."""
    if isinstance(exc, OSError) and exc.filename:
        return str(exc.filename)
    try:
        request = getattr(exc, "request", None)  # httpx raises when an exception has none
    except RuntimeError:
        request = None
    url = getattr(request, "url", None)
    return f"{url.scheme}://{url.netloc.decode() if isinstance(url.netloc, bytes) else url.netloc}" if url is not None else "The service"


def _mapped(exc: BaseException) -> ServingError | None:
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code in _ERRNO:
        cause, step = _ERRNO[code]
        return ServingError(cause.format(what=_what(exc)), step)
    for cls in type(exc).__mro__:
        if (row := TABLE.get(_key(cls))) is not None:
            kind, cause, step = row
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            return kind(cause.format(what=_what(exc), text=text), step)
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ if link.__cause__ is not None else (None if link.__suppress_context__ else link.__context__)
    return chain


def failure(exc: BaseException, verb: str = "") -> ServingError | None:
    """The cause and next step for `exc`, or None when no row knows it (a bug)."""
    chain = _chain(exc)
    for link in chain:
        if isinstance(link, ServingError):
            return link
    for link in chain:
        if isinstance(link, ValidationError):
            return input_error(link, verb)
    for link in chain:
        if (mapped := _mapped(link)) is not None:
            return mapped
    return None


def bug(exc: BaseException, verb: str, where: str) -> ServingError:
    """What a face says when no row knows `exc`: it is ours to fix, and where its traceback went."""
    return ServingError(f"{verb or 'The command'} failed on an unexpected {type(exc).__name__}; this is a bug in model-serving, not in your input.",
                        f"The traceback is in {where}; report it with that. Other verbs keep working.")


def guarded(call: Callable[[], Any]) -> Any:
    """Run `call`, raising any failure the table knows as its ServingError (the core's own boundary, e.g. a plan)."""
    try:
        return call()
    except ServingError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped, or re-raised untouched
        mapped = failure(exc)
        if mapped is None:
            raise
        raise mapped from exc
