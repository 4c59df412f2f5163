"""Ollama server versions and the features model-serving relies on."""

from __future__ import annotations

import re

# Minimum server versions (from Ollama's release history as summarised in the shared reference).
FEATURES: dict[str, tuple[int, int, int]] = {
    "create from uploaded blobs (files)": (0, 5, 0),
    "GGUF's own Jinja chat template (llama-server engine)": (0, 30, 0),
}
GGUF_TEMPLATE = "GGUF's own Jinja chat template (llama-server engine)"
CREATE_FILES = "create from uploaded blobs (files)"


def parse_version(text: str) -> tuple[int, int, int] | None:
    """'0.33.0-rc2' -> (0, 33, 0); None for a development build without a number."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def supports(version: str, feature: str) -> bool:
    parsed = parse_version(version)
    # An unnumbered (source) build is assumed current.
    return parsed is None or parsed >= FEATURES[feature]


def missing_features(version: str) -> list[str]:
    return [name for name in FEATURES if not supports(version, name)]


def shown(feature: str) -> str:
    return ".".join(str(p) for p in FEATURES[feature])
