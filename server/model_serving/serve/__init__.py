"""Serving engines: the embedded llama.cpp server and Ollama, with one probe and one status view."""
