"""Ollama: register a GGUF so it chats the way its checkpoint does, prove it, and manage models.

Everything goes over Ollama's REST API (so a remote OLLAMA_HOST works): `client` speaks it,
`modelfile` and `templates` build what is sent, `register` and `probe` do the work, `manage`
lists and maintains models, and `cli` / `mcp_tools` are the thin faces.
"""
