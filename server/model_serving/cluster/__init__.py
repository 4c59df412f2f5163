"""What a cluster runs: the production bundle for vLLM or llama.cpp, sized from the model's own numbers."""
