"""Every failure a tool call can meet, mapped in one place to a cause and a next step.

The SDK's own argument validation, our input models, `ServingError`s from the core and bugs all end
here: the first three become `isError` results the model can act on; a bug keeps its traceback in the
server log (stderr and a file under the state dir) and the result says where that log is.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError

from model_serving.errors import ServingError
from model_serving.requests import input_error

log = logging.getLogger("model_serving.mcp")
_LOG_FILES: dict[Path, logging.Handler] = {}


def log_to(state_dir: Path) -> Path:
    """Send the server log to `<state_dir>/mcp-server.log` as well as stderr; return the file."""
    path = state_dir / "mcp-server.log"
    if path not in _LOG_FILES:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger("model_serving").addHandler(handler)
        logging.getLogger("model_serving").setLevel(logging.INFO)
        _LOG_FILES[path] = handler
    return path


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)  # type: ignore[assignment]
    return chain


def failure(exc: BaseException, verb: str, log_file: Path | None) -> ServingError:
    """The ServingError to report for `exc`, whatever raised it (the SDK wraps ours in ToolError)."""
    chain = _cause_chain(exc)
    for link in chain:
        if isinstance(link, ServingError):
            return link
    for link in chain:
        if isinstance(link, ValidationError):
            return input_error(link, verb)
    log.error("%s raised an unexpected %s", verb, type(chain[-1]).__name__, exc_info=chain[-1])
    where = f"the server log {log_file}" if log_file else "the server's stderr"
    return ServingError(f"{verb} failed on an unexpected {type(chain[-1]).__name__}; this is a bug in model-serving, not in your input.",
                        f"The traceback is in {where}; report it with that log. Other tools keep working.")


def error_result(err: ServingError, extra: dict | None = None) -> CallToolResult:
    text = err.cause + (f" Next step: {err.next_step}" if err.next_step else "")
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={**err.to_dict(), "detail": err.detail[-2000:], **(extra or {})}, is_error=True)
