"""How sizes read to a person: one format for the CLI, the MCP summaries and the reports."""

from __future__ import annotations


def human_size(n: float | None) -> str:
    """Bytes in binary units, one decimal above a KiB ("?" when unknown)."""
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
