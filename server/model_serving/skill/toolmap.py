"""Which of our MCP tools depend on which upstream facts, so a drift report can name them.

Kept in one place so a test can check every name here exists on the live server.
"""

from __future__ import annotations

# Fact table -> tools whose behaviour rests on it.
TABLE_TOOLS: dict[str, list[str]] = {
    "modelfile_instructions": ["register_model", "deploy_model", "ollama_modelfile", "ollama_check_modelfile"],
    "modelfile_parameters": ["register_model", "deploy_model", "ollama_modelfile", "ollama_check_modelfile"],
    "ollama_endpoints": [],  # per endpoint, below
    "ollama_quantize_targets": ["register_model", "quantize_gguf"],
    "quantization_types": ["quantize_gguf", "deploy_model"],
    "quantize_options": ["quantize_gguf"],
    "ggml_types": ["inspect_model"],
    "gguf_file_types": ["inspect_model", "quantize_gguf"],
    "gguf_keys": ["inspect_model", "export_gguf"],
    "ollama_environment": ["serving_status", "register_model"],
    "ollama_context_tiers": ["register_model", "serving_status"],
    "kv_cache_types": ["serve_start"],
    "llama_server_options": ["serve_start"],
    "llama_server_endpoints": ["serve_start", "serving_status", "bench"],
    "llama_bench_options": ["bench"],
}

# Ollama REST endpoints our tools call (model_serving/ollama/client.py, bench); only these go into
# the API reference.
ENDPOINT_TOOLS: dict[str, list[str]] = {
    "POST /api/create": ["register_model", "deploy_model"],
    "HEAD /api/blobs/:digest": ["register_model"],
    "POST /api/blobs/:digest": ["register_model"],
    "POST /api/show": ["register_model", "ollama_show"],
    "GET /api/tags": ["serving_status"],
    "GET /api/ps": ["serving_status"],
    "GET /api/version": ["serving_status"],
    "POST /api/chat": ["register_model", "ollama_probe", "bench"],
    "POST /api/generate": ["bench", "ollama_manage"],
    "POST /api/copy": ["ollama_manage"],
    "DELETE /api/delete": ["ollama_manage"],
    "POST /api/pull": ["ollama_manage"],
}


def tools_for(table: str, key: str) -> list[str]:
    if table == "ollama_endpoints":
        return ENDPOINT_TOOLS.get(key, [])
    return TABLE_TOOLS.get(table, [])


def all_tool_names() -> set[str]:
    names = {t for tools in TABLE_TOOLS.values() for t in tools}
    return names | {t for tools in ENDPOINT_TOOLS.values() for t in tools}
