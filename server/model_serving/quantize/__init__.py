"""Quantize a GGUF with llama.cpp and judge the result against its source."""
