"""Settings: where state lives, which paths may be touched, which hosts may be called.

They come from the environment and CLI flags only, never from MCP tool arguments, so a model driving
the server cannot widen its own reach (see `resolve_endpoint`).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from pydantic import SecretStr

from model_serving.errors import InputError

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


def _default_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "model-serving"


def normalize_host(host: str) -> str:
    """Accept Ollama's own forms ("0.0.0.0", "host:port", "http://h:p") and return a base URL."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "http://" + host
    parsed = urlparse(host)
    port = parsed.port or (443 if parsed.scheme == "https" else 11434)
    hostname = parsed.hostname or "127.0.0.1"
    if hostname in ("0.0.0.0", "::"):
        hostname = "127.0.0.1"  # a bind-all address is reached through loopback
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{parsed.scheme}://{hostname}:{port}"


def is_loopback_url(url: str) -> bool:
    hostname = urlparse(url).hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _refuse_engine_build(value: str) -> None:
    """The engine build is no longer a choice; an old value other than auto/native would silently mean nothing."""
    if value.strip().lower() not in ("", "auto", "native"):
        raise InputError(f"MODEL_SERVING_ENGINE_BUILD={value!r} is no longer a setting: the embedded engine runs only the "
                         "natively built llama-server (the wheel build was removed).",
                         "Unset MODEL_SERVING_ENGINE_BUILD; if no native build exists, rerun scripts/install.sh to compile it.")


@dataclass
class Settings:
    home: Path = field(default_factory=_default_home)
    roots: list[Path] = field(default_factory=list)
    ollama_host: str = DEFAULT_OLLAMA_HOST
    endpoints: dict[str, str] = field(default_factory=dict)
    hf_token: SecretStr | None = None
    ollama_api_key: SecretStr | None = None
    native_cache: Path = field(default_factory=lambda: _default_home() / "llama.cpp")  # compiled llama.cpp, by revision and CPU

    @classmethod
    def from_env(cls, *, roots: list[str] | None = None, home: str | None = None, ollama_host: str | None = None) -> Settings:
        env = os.environ
        _refuse_engine_build(env.get("MODEL_SERVING_ENGINE_BUILD", ""))
        home_path = Path(home or env.get("MODEL_SERVING_HOME") or _default_home()).expanduser()
        root_list = roots or [r for r in env.get("MODEL_SERVING_ROOTS", "").split(os.pathsep) if r]
        resolved_roots = [Path(r).expanduser().resolve() for r in root_list] or [Path.cwd().resolve()]
        resolved_roots.append(home_path.resolve())
        endpoints = {}
        for item in env.get("MODEL_SERVING_ENDPOINTS", "").split(","):
            if "=" in item:
                name, url = item.split("=", 1)
                endpoints[name.strip()] = url.strip().rstrip("/")
        token = env.get("HF_TOKEN")
        key = env.get("OLLAMA_API_KEY")
        return cls(
            home=home_path,
            roots=list(dict.fromkeys(resolved_roots)),
            ollama_host=normalize_host(ollama_host or env.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST),
            endpoints=endpoints,
            hf_token=SecretStr(token) if token else None,
            ollama_api_key=SecretStr(key) if key else None,
            native_cache=Path(env.get("MODEL_SERVING_NATIVE_CACHE") or _default_home() / "llama.cpp").expanduser(),
        )

    @property
    def state_dir(self) -> Path:
        path = self.home / "state"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def resolve_endpoint(self, name_or_url: str | None) -> str:
        """An endpoint argument may name a configured endpoint or a loopback URL, nothing else."""
        if not name_or_url:
            return self.ollama_host
        if name_or_url == "ollama":
            return self.ollama_host
        if name_or_url in self.endpoints:
            return self.endpoints[name_or_url]
        url = name_or_url.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        if not is_loopback_url(url):
            raise InputError(
                f"Endpoint {name_or_url!r} is neither configured nor a loopback address.",
                "Configure it with MODEL_SERVING_ENDPOINTS=name=url (or OLLAMA_HOST) and pass its name.",
            )
        return url
