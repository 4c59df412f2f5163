"""`promote NAME@N`, `rollback NAME`, `canary NAME@N --share PCT`: which version answers the public name.

The embedded engine switches on the gateway: its front routes the public name by weight (serve/gateway/routes.py),
a request already forwarded finishing on the version it started on, so a switch loses no request. A client keeps its
base URL (the gateway's) and its model name. Ollama switches by copying the version's tag onto the public name
(`/api/copy`: the name's manifest now points at that version's blobs; every tag keeps its own). Ollama routes by name
only, so a canary share is the gateway's alone.

After a switch the public name is probed: one greedy answer to the deploy's probe question through the public name
must equal the same question put to the version directly. A rollback that answers otherwise is reported as a failure.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError, VerificationFailed
from model_serving.settings import Settings

from . import store
from .probe import ProbeComparison, compare
from .resolve import number

Action = Literal["promote", "rollback", "canary"]


class SwitchResult(BaseModel):
    name: str
    action: Action
    target: str = Field(description="The engine the versions are served on")
    live: int | None
    was_live: int | None
    canary: store.Canary | None = None
    route: list[dict[str, int | str]] = Field(default_factory=list, description="Gateway: the public name's backends and weights")
    endpoint: str | None = Field(None, description="Where clients reach the public name")
    probe: ProbeComparison | None = None
    next_steps: list[str] = Field(default_factory=list)


def _serving(settings: Settings, book: store.VersionBook, n: int) -> store.Version:
    from .resolve import base_url

    version = book.get(n)
    if version.state != "serving" or base_url(settings, version) is None:
        raise InputError(f"{book.name}@{n} is not served ({version.state if version.state != 'serving' else 'its engine is not running'}).",
                         f"Deploy its source again ({version.source}) to serve it, then switch to the new version.")
    return version


def _gateway_url(settings: Settings, verb: str, name: str) -> str:
    from model_serving.serve.registry import load_gateway

    record = load_gateway(settings)
    if record is None or record.state != "running":
        raise InputError(f"{verb} on the embedded engine moves {name}'s traffic on the gateway, which is not running.",
                         "Start it (`model-serving serve gateway start`) and send clients to its base URL; then run this again.")
    return record.base_url


def _route(settings: Settings, name: str, weights: list[tuple[str, int]]) -> list[dict[str, int | str]]:
    """Route the public name; a route that sends everything to the plain name is no route at all."""
    from model_serving.serve.gateway.routes import Backend, Route, clear_route, set_route

    weights = [(model, w) for model, w in weights if w > 0]
    if weights == [(name, 100)]:
        clear_route(settings, name)
    else:
        set_route(settings, Route(public=name, backends=[Backend(model=m, weight=w) for m, w in weights]))
    return [{"model": m, "weight": w} for m, w in weights]


def route_alone(settings: Settings, name: str, served_as: str) -> None:
    """Send every request for the public name to `served_as` on the gateway (a deploy with replace, served beside)."""
    _route(settings, name, [(served_as, 100)])


def _point(settings: Settings, book: store.VersionBook, version: store.Version, verb: str) -> tuple[list[dict[str, int | str]], str]:
    """Make `version` answer the public name alone; the route (gateway) and the endpoint clients use."""
    if version.target == "ollama":
        from model_serving.serve.ollama.client import OllamaClient

        with OllamaClient(settings) as client:
            client.copy(version.served_as, book.name)
            return [], f"{client.host}/api/chat"
    if version.target != "embedded":
        raise InputError(f"{verb} switches versions on the embedded engine's gateway or on Ollama; {book.name} is served on {version.target}.",
                         f"Point clients at {book.name}@{version.n}'s own URL (`model-serving history {book.name}`).")
    gateway = _gateway_url(settings, verb, book.name)
    return _route(settings, book.name, [(version.served_as, 100)]), f"{gateway}/v1/chat/completions"


def _switch(settings: Settings, ref_name: str, which: str | None, action: Action, *, rollback: bool) -> SwitchResult:
    with store.update(settings, ref_name) as book:
        if not book.versions:
            raise InputError(f"{ref_name!r} has no versions.", f"Deploy it first: `model-serving deploy SOURCE --name {ref_name}`.")
        n = number(book, which)
        version, was = _serving(settings, book, n), book.live
        if n == was and book.canary is None:
            raise InputError(f"{ref_name}@{n} is already live.", f"See the versions: `model-serving history {ref_name}`.")
        route, endpoint = _point(settings, book, version, action)
        if rollback:
            book.previous = book.previous[:-1]
        book.go_live(n, push=not rollback)
        book.canary = None
    probe = compare(settings, book.name, version, endpoint)
    result = SwitchResult(name=book.name, action=action, target=version.target, live=n, was_live=was, route=route, endpoint=endpoint, probe=probe,
                          next_steps=[f"undo: model-serving rollback {book.name}"] if not rollback else [])
    if not probe.same:
        raise VerificationFailed(f"After the {action}, {book.name} answers otherwise than {book.name}@{n} does: {probe.public_answer!r} "
                                 f"against {probe.version_answer!r}.", f"Check the route (`model-serving history {book.name}`) and the "
                                 "gateway's log; the version store says it is live.", detail=result.model_dump_json())
    return result


def promote(settings: Settings, ref: str) -> SwitchResult:
    """Make NAME@N live (100% of the public name); the version live before goes on the rollback stack."""
    name, which = store.split_ref(ref)
    if which is None:
        raise InputError(f"promote takes a version: {ref}@N.", f"See the versions with `model-serving history {ref}`.")
    return _switch(settings, name, which, "promote", rollback=False)


def rollback(settings: Settings, ref: str) -> SwitchResult:
    """Make the version that was live before the current one live again, and probe that it answers as it did."""
    name, which = store.split_ref(ref)
    if which is not None:
        raise InputError(f"rollback takes the name, not a version ({ref}).", f"Run `model-serving rollback {name}`, or promote {ref} to pick one.")
    book = store.require(settings, name)
    if not book.previous:
        raise InputError(f"{name} has nothing to roll back to: only version {book.live} was ever live.",
                         f"See its versions: `model-serving history {name}`.")
    return _switch(settings, name, "previous", "rollback", rollback=True)


def canary(settings: Settings, ref: str, share: int) -> SwitchResult:
    """Send `share`% of the public name's requests to NAME@N, the rest to the live version; 0 ends the canary."""
    name, which = store.split_ref(ref)
    if which is None or which in ("live", "previous") and share:
        raise InputError(f"canary takes the version to try: {name}@N.", f"See the versions with `model-serving history {name}`.")
    with store.update(settings, name) as book:
        live = _serving(settings, book, number(book, "live"))
        n = number(book, which)
        if live.target != "embedded":
            raise InputError(f"{live.target.capitalize()} routes a model name to one model only, so it cannot send a share of {name}'s requests to {name}@{n}.",
                             f"Compare the versions with `model-serving eval {name}@{n} --against {name}@live`, then `promote {name}@{n}` "
                             f"(undo: `rollback {name}`); or deploy on the embedded engine, whose gateway routes a share.")
        endpoint = f"{_gateway_url(settings, 'canary', name)}/v1/chat/completions"
        if share == 0 or n == live.n:
            route, book.canary = _route(settings, name, [(live.served_as, 100)]), None
        else:
            if share == 100:
                raise InputError("A canary of 100% is a promote.", f"Run `model-serving promote {name}@{n}`.")
            candidate = _serving(settings, book, n)
            route = _route(settings, name, [(live.served_as, 100 - share), (candidate.served_as, share)])
            book.canary = store.Canary(version=n, share=share)
        steps = [f"watch it: model-serving metrics; then promote {name}@{n} or end it with canary {name}@{n} --share 0"] if book.canary else []
        return SwitchResult(name=name, action="canary", target=live.target, live=book.live, was_live=book.live, canary=book.canary, route=route,
                            endpoint=endpoint, next_steps=steps)
