"""Serving: engines as classes on one process layer, one registry of served names, one probe, one status view.

From the bottom up (tests/test_layers.py holds these floors):
  engine_names.py, processes.py   the names engines go by; spawn, the one health wait and liveness check, stop, ports
  probe_checks.py                 the probe every engine shares (checks and result)
  registry.py                     one record per served name, keyed by engine; the per-name start claim
  metrics.py                      every engine's /metrics in one shape
  engine_protocol.py, engine_base.py   the Engine protocol, and what engines we run share
  embedded/, vllm/, ollama/       one engine each (llama.cpp native build, vLLM, Ollama as a registration target)
  replicas/, gateway/             llama.cpp replicas behind vllm-router; llama.cpp's router mode as one endpoint
  engines.py, register.py, status.py   the engine table; register and prove; what is served now
"""
