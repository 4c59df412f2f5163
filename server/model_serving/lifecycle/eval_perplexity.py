"""Perplexity of a user text under each version, where the engine's model file lets us score it.

llama-server scores no given text (its API returns log-probabilities of the tokens it samples, not of a text it is
handed), so for a version llama.cpp serves from a GGUF the project's quality code (quantize/quality.perplexity: one
pass over non-overlapping 512-token windows) runs on that same GGUF, in a child process, through the Python binding
that is bound to the same llama.cpp build as the engine. A version served from a checkpoint folder (vLLM) or by Ollama
is reported as not measured, with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, Field

from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress, run_process
from model_serving.lifecycle.eval_targets import EvalTarget
from model_serving.quantize.quality import MAX_TEXT_TOKENS, N_CTX, perplexity
from model_serving.util import child
from model_serving.util.process import die_with_parent, openmp_env, python_argv

MAX_TEXT_BYTES = 4 * 1024 * 1024
METHOD = (f"the project's quality code (quantize/quality.py) on the version's GGUF through the Python binding of the engine's llama.cpp "
          f"build: the first {MAX_TEXT_TOKENS} tokens scored once each in non-overlapping {N_CTX}-token windows")


class TextScore(BaseModel):
    perplexity: float | None = None
    tokens_scored: int = 0
    token_nll: list[float] | None = None
    tokens_sha256: str | None = Field(default=None, description="Two versions pair only when they scored the same token ids")
    method: str = METHOD
    not_measured: str | None = Field(default=None, description="Why there is no figure")


def read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise InputError(f"{path.name} is {size} bytes; the perplexity text may be at most {MAX_TEXT_BYTES}.",
                         f"Pass a shorter text: only its first {MAX_TEXT_TOKENS} tokens are scored.")
    return path.read_text(encoding="utf-8")


def score_text(target: EvalTarget, text_path: Path, progress: Progress) -> TextScore:
    """The version's perplexity on the text, or why it was not measured."""
    source = Path(target.source) if target.source else None
    if target.engine not in ("embedded", "replicas") or source is None or source.suffix != ".gguf" or not source.is_file():
        return TextScore(not_measured=f"{target.engine} engine: perplexity needs the version's GGUF, which the llama.cpp engines serve")
    said: list[child.Message] = []

    def on_line(line: str) -> None:
        message = child.parse(line)
        if message.kind in ("result", "error"):
            said.append(message)

    progress.update(None, f"perplexity of {target.ref} on {text_path.name}")
    code, tail = run_process(python_argv("model_serving.lifecycle.eval_perplexity", source, text_path), progress, env=openmp_env(), on_line=on_line)
    if code != 0 or not said or said[-1].kind != "result":
        why = said[-1].get("cause", "") if said and said[-1].kind == "error" else f"the scorer exited with code {code}: {tail.splitlines()[-1:] or ''}"
        return TextScore(not_measured=f"scoring failed: {why}")
    return TextScore.model_validate(said[-1].fields)


def _child(argv: list[str]) -> int:
    die_with_parent()
    gguf, text_path = Path(argv[0]), Path(argv[1])
    try:
        scored = perplexity(gguf, read_text(text_path))
    except ServingError as exc:
        child.emit("error", cause=exc.cause, next_step=exc.next_step)
        return 2
    child.emit("result", perplexity=scored.perplexity, tokens_scored=scored.tokens_scored, token_nll=scored.token_nll,
               tokens_sha256=scored.tokens_sha256)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
