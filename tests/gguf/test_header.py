"""The header reader's own ggml type table (it reads headers without importing gguf-py)."""


def test_our_tensor_type_table_agrees_with_gguf_py() -> None:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    from model_serving.gguf.filetypes import TENSOR_TYPES

    for ggml_type, (name, block, size) in TENSOR_TYPES.items():
        qtype = GGMLQuantizationType(ggml_type)
        assert (qtype.name, *GGML_QUANT_SIZES[qtype]) == (name, block, size)
