"""Replicas of one model behind vllm-router: several engine processes, one OpenAI base URL."""
