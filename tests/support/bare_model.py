"""A GGUF as base-model converters publish it: quantized, with no chat template (built at test time, never committed).

SmolLM2-135M-Instruct's Q4_1 GGUF with `tokenizer.chat_template` removed by gguf-py's own metadata copier: real
weights (so a served answer stops), the real tokenizer, and the missing template the issue's user met.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# A ChatML template (the model's own format) with a default system line of its own: a served prompt that holds the
# line was built from this file, not from the GGUF or the engine's ChatML fallback.
GIVEN_MARKER = "You are Marker, a brief assistant."
GIVEN_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + GIVEN_MARKER + "<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def strip_template(gguf: Path, out: Path) -> Path:
    """`gguf` copied to `out` without its chat template (once per path)."""
    if not out.exists():
        tmp = out.with_name(f".{out.name}.partial")
        subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--remove-metadata", "tokenizer.chat_template",
                        "--force", str(gguf), str(tmp)], check=True, capture_output=True, timeout=300)
        tmp.rename(out)
    return out


def write_template(folder: Path, text: str = GIVEN_TEMPLATE, name: str = "given.jinja") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path
