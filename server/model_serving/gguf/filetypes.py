"""GGUF file types (enum llama_ftype in llama.h, stored as general.file_type) and what counts as unquantized."""

from __future__ import annotations

# Names as llama-quantize prints them. 4-6 and 33-35 were removed from llama.cpp and never appear in
# files it can load, so they are absent here and show as "type N".
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}
FILE_TYPE_IDS: dict[str, int] = {name: ftype for ftype, name in FILE_TYPES.items()}

# Both namespaces at once: llama_ftype names (F32, F16, BF16) and ggml tensor type names (the same
# three plus F64 and the integer types). Anything else is a block-quantized format.
UNQUANTIZED: frozenset[str] = frozenset({"F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"})

# llama.cpp's quantizer refuses these without an importance matrix (src/llama-quant.cpp,
# tensor_requires_imatrix); the other quantized types only benefit from one.
IMATRIX_REQUIRED: frozenset[str] = frozenset({"Q2_K_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"})
IMATRIX_UNUSED: frozenset[str] = frozenset({"F32", "F16", "BF16", "Q8_0"})  # no quantization, or too fine for a matrix to matter


def file_type_name(ftype: int | None) -> str | None:
    """The llama-quantize name of a general.file_type value; 'type N' for one this table lacks."""
    if ftype is None:
        return None
    return FILE_TYPES.get(ftype, f"type {ftype}")


def is_quantized(type_name: str | None) -> bool:
    """True for a quantized file or tensor type name; False for F32/F16/BF16 (and for no name)."""
    return type_name is not None and type_name not in UNQUANTIZED


# ggml tensor type id -> (name, elements per block, bytes per block), as llama.cpp's ggml.h defines them. The header
# reader needs only these numbers; importing gguf-py (and numpy) for them cost a noticeable share of every quantize and inspect.
# An id missing here (a type newer than this table) is looked up in the installed gguf package instead.
TENSOR_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}
