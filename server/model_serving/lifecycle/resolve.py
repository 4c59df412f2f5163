"""`NAME@N`, `NAME@live`, `NAME@previous` (and a bare NAME: the live version) to the version and where it answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.requests import DeployTarget
from model_serving.settings import Settings

from . import store


class ServedVersion(BaseModel):
    name: str = Field(description="The public name")
    n: int
    served_as: str = Field(description="The model name to send requests to this version alone (embedded: NAME or NAME@N; Ollama: its tag)")
    target: DeployTarget
    base_url: str | None = Field(None, description="Where served_as answers (embedded: its own engine; Ollama: the server); None when not served")
    live: bool = False
    state: store.State = "serving"


def number(book: store.VersionBook, which: str | None) -> int:
    """The version a reference names in `book`."""
    if which is None or which == "live":
        if book.live is None:
            raise InputError(f"{book.name} has no live version.", f"Promote one: `model-serving promote {book.name}@N`.")
        return book.live
    if which == "previous":
        if not book.previous:
            raise InputError(f"{book.name} has no previous version: only one was ever live.", f"See its versions: `model-serving history {book.name}`.")
        return book.previous[-1]
    return int(which)


def base_url(settings: Settings, version: store.Version) -> str | None:
    if version.state != "serving":
        return None
    if version.target == "ollama":
        return settings.ollama_host
    from model_serving.serve.registry import list_models

    running = [m for m in list_models(settings) if m.name == version.served_as and m.state == "running"]
    return running[0].base_url if running else None


def resolve(settings: Settings, ref: str) -> ServedVersion:
    """The version `ref` names, and where it answers now (base_url None: not served any more)."""
    name, which = store.split_ref(ref)
    book = store.require(settings, name)
    version = book.get(number(book, which))
    return ServedVersion(name=name, n=version.n, served_as=version.served_as, target=version.target, base_url=base_url(settings, version),
                         live=book.live == version.n, state=version.state)
