"""The vLLM engine: HF checkpoints served by vLLM in its own environment, beside the embedded llama.cpp engine."""
