"""The `model-serving-mcp` server (entry point: `model_serving.mcp.server:main`)."""
