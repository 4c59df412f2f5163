"""A GGUF's tokenizer through llama.cpp (vocab only: no weights), loaded once per file and shared.

The binding's finalizer needs its own module globals: a tokenizer still alive when the interpreter tears them down
prints a TypeError traceback as the process exits. So the cache is closed at exit, before that teardown.
"""

from __future__ import annotations

import atexit
import threading
from collections import OrderedDict
from typing import Any

KEPT = 8  # files whose tokenizer stays loaded; one evicted is dropped, not closed, since a caller may still hold it

_open: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()


def vocab(path: str) -> Any:  # a llama_cpp.Llama (the binding ships no type information)
    with _lock:
        if path in _open:
            _open.move_to_end(path)
            return _open[path]
        from llama_cpp import Llama

        llm = _open[path] = Llama(model_path=path, vocab_only=True, verbose=False)
        while len(_open) > KEPT:
            _open.popitem(last=False)
        return llm


@atexit.register
def _close() -> None:
    with _lock:
        for llm in _open.values():
            llm.close()
        _open.clear()
