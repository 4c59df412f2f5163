"""Whether a GGUF LoRA adapter was made for a base GGUF: the one check the embedded engine and Ollama share.

The architecture must match, and every adapter pair `X.lora_a`/`X.lora_b` must fit the base's tensor
`X` (input width of lora_a, output width of lora_b): a base of another size is refused here with a
cause, instead of llama.cpp failing later at load time with a shape error in its log.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from model_serving.errors import InputError
from model_serving.gguf.header import _U32, _U64, SHORT_STRING, _Cursor, _preamble, _read_metadata, read_header
from model_serving.gguf.info import GGUFInfo, read_gguf

CONVERT = "Convert the adapter with model-serving export ADAPTER_DIR --base BASE_DIR --as-lora-gguf."


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> dims (ne0 first), from the header walk (gguf.GGUFReader takes seconds per vocabulary)."""
    read_header(path)  # a corrupt or truncated file is refused with its own cause first
    shapes: dict[str, tuple[int, ...]] = {}
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        _, n_tensors, n_kv = _preamble(cur)
        _read_metadata(cur, n_kv)
        for _ in range(n_tensors):
            name = cur.string(SHORT_STRING)
            dims = tuple(int(cur.take(_U64)) for _ in range(cur.take(_U32)))
            cur.take(_U32), cur.take(_U64)  # type and offset
            if name is not None:
                shapes[name] = dims
    return shapes


def _misfits(base: dict[str, tuple[int, ...]], lora: dict[str, tuple[int, ...]]) -> list[str]:
    """Adapter tensors the base lacks or whose widths differ from the base tensor they modify."""
    bad = []
    for name, a in lora.items():
        if not name.endswith(".lora_a"):
            continue
        target = name.removesuffix(".lora_a")
        b = lora.get(f"{target}.lora_b")
        if target not in base or b is None:
            bad.append(f"{target} (not in the base)" if b is not None else f"{target} (no lora_b)")
        elif a[0] != base[target][0] or b[-1] != base[target][1]:
            bad.append(f"{target} ({a[0]}x{b[-1]} vs the base's {base[target][0]}x{base[target][1]})")
    return bad


def check_lora(base: GGUFInfo, adapter: Path) -> GGUFInfo:
    """The adapter's header, once it is known to be a GGUF LoRA of the base's architecture whose tensors fit the base."""
    lora = read_gguf(adapter)
    if not lora.is_adapter:
        raise InputError(f"{adapter.name} is not a LoRA adapter GGUF (general.type is not 'adapter').", CONVERT)
    if lora.architecture != base.architecture:
        raise InputError(f"{adapter.name} is an adapter for {lora.architecture}, but the base is {base.architecture}.",
                         "Pass the base GGUF the adapter was trained on.")
    misfits = _misfits(_shapes(Path(base.path)), _shapes(adapter))
    if misfits:
        raise InputError(f"{adapter.name} does not fit the base {Path(base.path).name}: " + ", ".join(misfits[:3])
                         + (f" and {len(misfits) - 3} more" if len(misfits) > 3 else "") + ".",
                         "Pass the base the adapter was trained on (same model and size), or convert the adapter against it again.")
    return lora
