"""The embedded engine: llama.cpp's natively built server, one supervised process per model on 127.0.0.1."""
