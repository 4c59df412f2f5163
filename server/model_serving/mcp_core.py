"""Core tools: inspect, export, quantize, serve, register, status, deploy."""

from __future__ import annotations

from typing import Any


def register_tools(mcp: Any, state: Any) -> None:
    pass
