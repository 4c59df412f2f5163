"""Output token counts from the model's own tokenizer, to fill in for servers that send no counts and
to cross-check those that do (re-tokenizing text can differ by a token at boundaries, rarely more)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_serving.bench.schema import Finding, RequestRecord
from model_serving.gguf.vocab import vocab as _vocab

_lock = threading.Lock()  # one llama.cpp tokenizer object is not safe across threads
MISMATCH_TOLERANCE = 0.10  # share of tokens; above it the counts disagree beyond boundary effects


class Vocabulary:
    """The tokenizer's view the random workload needs: its size, and text from token ids (control tokens dropped)."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self.size = int(llm.n_vocab())

    def text_of(self, ids: list[int], n: int) -> tuple[str, int]:
        """The ids decoded to text, trimmed so that it tokenizes back to at most n tokens; and how many it tokenizes to.

        Decoded pieces merge when tokenized again, so the count can fall short of n: the caller adds ids and asks again.
        """
        with _lock:
            text = self._llm.detokenize(ids, special=False).decode("utf-8", errors="ignore")
            again = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            if len(again) > n:
                text = self._llm.detokenize(again[:n], special=False).decode("utf-8", errors="ignore")
        return text.replace("\x00", ""), min(len(again), n)


    def count(self, text: str) -> int:
        with _lock:
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def vocabulary(gguf_path: Path) -> Vocabulary:
    return Vocabulary(_vocab(str(gguf_path)))


def count(gguf_path: Path, text: str) -> int:
    return len(_vocab(str(gguf_path)).tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0


def apply(records: Sequence[RequestRecord], gguf_path: Path) -> list[Finding]:
    """Set each record's tokenizer count; use it where the server gave none; report disagreements."""
    try:
        counts = [count(gguf_path, r.text) for r in records]
    except Exception as exc:  # noqa: BLE001 - a tokenizer that cannot load only costs the cross-check
        return [Finding(code="tokenizer_unavailable", severity="info", message=f"Could not load the tokenizer from {gguf_path.name}: {exc}")]
    findings, differing = [], 0
    compared = 0
    for record, n in zip(records, counts, strict=True):
        record.client_output_tokens = n
        if record.output_tokens_source == "chunks" and n:
            record.output_tokens, record.output_tokens_source = n, "tokenizer"
        elif record.output_tokens_source == "server" and record.output_tokens:
            compared += 1
            if abs(record.output_tokens - n) > max(1, MISMATCH_TOLERANCE * record.output_tokens):
                differing += 1
    if differing:
        findings.append(Finding(code="server_tokenizer_mismatch", message=(
            f"{differing} of {compared} requests: the server's output token count and the tokenizer's count of the text differ by more "
            "than 10%: the server may count special or hidden (reasoning) tokens, or the GGUF is not the served model.")))
    return findings
