"""model-serving: Hugging Face checkpoint -> GGUF -> quantized -> served and measured.

The core library lives in the capability modules; `cli` and `mcp_server` are thin faces over it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("model-serving")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
