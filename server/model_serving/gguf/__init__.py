"""The GGUF format: one defensive header reader and one file-type table."""
