"""How a tool call's failure reaches the client: the one table (failures.py) words it, this makes it a result.

Our input models, `ServingError`s from the core and the library and OS failures the table knows become
`isError` results the model can act on; a bug keeps its traceback in the server log (stderr and a file
under the state dir) and the result says where that log is.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mcp.types import CallToolResult, TextContent

from model_serving import failures
from model_serving.errors import ServingError

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


def failure(exc: BaseException, verb: str, log_file: Path | None) -> ServingError:
    """The ServingError to report for `exc`: the one table's row (failures.py), or a bug whose traceback is logged."""
    known = failures.failure(exc, verb)
    if known is not None:
        return known
    log.error("%s raised an unexpected %s", verb, type(exc).__name__, exc_info=exc)
    return failures.bug(exc, verb, f"the server log {log_file}" if log_file else "the server's stderr")


def error_result(err: ServingError, extra: dict | None = None) -> CallToolResult:
    text = err.cause + (f" Next step: {err.next_step}" if err.next_step else "")
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={**err.to_dict(), "detail": err.detail[-2000:], **(extra or {})}, is_error=True)
