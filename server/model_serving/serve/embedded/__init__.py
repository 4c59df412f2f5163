"""The embedded engine: llama.cpp's server, one supervised process per model on 127.0.0.1."""
