"""One endpoint for every model: llama.cpp's server in router mode (`preset.py`: what it serves, `llama_router.py`: the process)."""
