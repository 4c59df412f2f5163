"""Weighted routes on the gateway: one public model name spread over several served names (a canary, a promote).

The table is `<state>/engine/@gateway.routes.json`: a generation number and, per public name, its backends
(a served name and a weight 0..100; a backend's share is its weight over the route's total). It is written
whole (temporary name, then rename) under its own flock, so two writers never lose each other's change and
the gateway's front (front.py) never reads half a table.

`set_route` and `clear_route` then make the running front take the table: a POST to the front's
`/_model_serving/routes` makes it re-read the file (never a table from the request: only who can write our state
directory can change a route), and the front answers with the generation it now serves; the call returns
once that generation is the one written. A request already forwarded keeps the backend it was given, so a
switch loses nothing. Without a running gateway the file is all there is: the front reads it when it starts.

`route_counters` reads two sources, labelled so: the front's own counts and latencies of the requests it
routed for the public name (per backend: requests, errors, in flight, TTFT from the streams, e2e), and each
backend's engine counters from llama.cpp's `/metrics` of its instance, which the router serves for
`GET /metrics?model=NAME` (read only while the instance is loaded: a read must not load a model).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from model_serving.errors import InputError, ServingError
from model_serving.serve import registry
from model_serving.serve.gateway.preset import router_id
from model_serving.serve.metrics import parse
from model_serving.serve.processes import alive
from model_serving.settings import Settings
from model_serving.util import claim as util_claim

ADMIN_PREFIX = "/_model_serving"  # no llama.cpp route starts so: the front answers these itself
RELOAD_PATH = f"{ADMIN_PREFIX}/routes"
COUNTERS_PATH = f"{ADMIN_PREFIX}/counters"
ACK_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 3.0
SERVED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,79}$")  # a registry name, with a version's '@N' suffix


class Backend(BaseModel):
    """One served name behind a public name, and its weight (its share: weight over the route's total)."""

    model: str = Field(description="The served name a request is sent on as (its `model` field rewritten to it)")
    weight: int = Field(ge=0, le=100)

    @field_validator("model")
    @classmethod
    def _served(cls, value: str) -> str:
        if not SERVED.match(value):
            raise ValueError(f"{value!r} is not a served model name (letters, digits and . _ : @ -, starting with a letter or digit)")
        return value


class Route(BaseModel):
    """A public model name and the backends its requests are spread over (smooth weighted round-robin: exact shares)."""

    public: str
    backends: list[Backend]

    @field_validator("public")
    @classmethod
    def _public(cls, value: str) -> str:
        return Backend(model=value, weight=0).model

    @model_validator(mode="after")
    def _weighted(self) -> Route:
        names = [b.model for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"the route for {self.public!r} names a backend twice: {names}")
        if sum(b.weight for b in self.backends) <= 0:
            raise ValueError(f"the route for {self.public!r} has no backend with a weight above 0")
        return self


class RouteTable(BaseModel):
    """The whole file: each write raises the generation, which the front acknowledges."""

    generation: int = 0
    routes: dict[str, Route] = Field(default_factory=dict)


class Percentiles(BaseModel):
    p50_s: float | None = None
    p95_s: float | None = None
    count: int = Field(0, description="Observations the percentiles are over (the most recent ones the front keeps)")


class FrontCounters(BaseModel):
    """The front's own measurements of what it forwarded for a public name to one backend (since the gateway started)."""

    requests: int = 0
    errors: int = Field(0, description="Answered with a status >= 400, or the connection to the router broke")
    in_flight: int = 0
    ttft: Percentiles = Field(default_factory=Percentiles, description="Streams only: request received to the first bytes back")
    e2e: Percentiles = Field(default_factory=Percentiles, description="Request received to the last byte back")


class EngineCounters(BaseModel):
    """llama.cpp's own counters for one backend's instance, from its /metrics through the router."""

    state: str = Field(description="The router's state of the instance: loaded, unloaded, sleeping, ...")
    values: dict[str, float] = Field(default_factory=dict, description="llamacpp:* samples (counters since the instance started)")
    reason: str | None = Field(None, description="Why there are no values")


class BackendCounters(BaseModel):
    model: str
    weight: int = Field(description="Its weight now (0: no longer in the route, counted before a switch)")
    share: float = Field(description="weight / the route's total weight")
    front: FrontCounters = Field(description="Measured by the gateway's front, per request it routed")
    engine: EngineCounters | None = Field(None, description="Read from the engine's own /metrics")


class RouteCounters(BaseModel):
    public: str
    generation: int = Field(description="The table generation the front serves (-1: the gateway is not running)")
    backends: list[BackendCounters]
    note: str = ""


def routes_path(settings: Settings) -> Path:
    return registry.gateway_path(settings, ".routes.json")


def read_table(path: Path) -> RouteTable:
    """The table in `path`; no file is an empty table. A damaged file is refused, never served as 'no routes'."""
    try:
        return RouteTable.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return RouteTable()
    except (OSError, ValidationError, ValueError) as exc:
        raise ServingError(f"The gateway's route table {path} cannot be read ({str(exc).splitlines()[0]}).",
                           "Set each route again (`canary`, `promote`), or delete the file to route by name only.") from None


def load_routes(settings: Settings) -> RouteTable:
    return read_table(routes_path(settings))


def set_route(settings: Settings, route: Route) -> None:
    """Write `route` into the table and return once a running gateway's front serves it."""
    _update(settings, route.public, route)


def clear_route(settings: Settings, public: str) -> None:
    """Remove the route for `public`: its requests go by name again (to the model `public`, or llama.cpp's 404)."""
    _update(settings, public, None)


@contextlib.contextmanager
def table_lock(settings: Settings) -> Iterator[None]:
    """Held by a route change from its read to the front's acknowledgement, and by a gateway start from its launch to its record."""
    registry.directory(settings)
    with util_claim.hold(registry.gateway_path(settings, ".routes.lock"), wait=True):
        yield


def _update(settings: Settings, public: str, route: Route | None) -> None:
    path = routes_path(settings)
    with table_lock(settings):
        table = read_table(path)
        if route is None and public not in table.routes:
            return
        table.generation += 1
        if route is None:
            table.routes.pop(public)
        else:
            table.routes[public] = route
        registry.write_atomic(path, table.model_dump_json(indent=2) + "\n")
        _acknowledge(settings, table.generation)


def _acknowledge(settings: Settings, generation: int) -> None:
    """Make the running front re-read the table; raise if it is alive but does not take this generation."""
    record = registry.load_gateway(settings)
    if record is None or record.state != "running" or not alive(record.pid):
        return  # the front reads the file when the gateway starts
    try:
        answer = httpx.post(f"{record.base_url}{RELOAD_PATH}", timeout=ACK_TIMEOUT_S)
        served = int(answer.json().get("generation", -1)) if answer.status_code == 200 else -1
    except (httpx.HTTPError, ValueError, AttributeError):
        served = -1
    if served < generation:
        raise ServingError(f"The gateway at {record.base_url} did not take route table generation {generation} (it answered {served}).",
                           f"The table is written ({routes_path(settings)}); restart the gateway with `model-serving serve gateway start` "
                           f"so its front reads it, and read its log at {record.log_path}.")


def route_counters(settings: Settings, public: str, *, timeout_s: float = READ_TIMEOUT_S) -> RouteCounters:
    """Per backend of `public`'s route: the front's own measurements and the engine's counters."""
    route = load_routes(settings).routes.get(public)
    record = registry.load_gateway(settings)
    running = record is not None and record.state == "running"
    measured, generation = _front_counters(record.base_url if record and running else None, public, timeout_s)
    if route is None and not measured:
        raise InputError(f"No route for {public!r} on the gateway, and its front counted nothing for it.",
                         "Route it first (`canary NAME@N --share PCT`), or read a single model's counters with `metrics NAME`.")
    weights = {b.model: b.weight for b in route.backends} if route else {}
    total = sum(weights.values()) or 1
    names = [*weights, *(m for m in measured if m not in weights)]
    states = _states(record.base_url, timeout_s) if record and running else {}
    backends = [BackendCounters(model=m, weight=weights.get(m, 0), share=round(weights.get(m, 0) / total, 4),
                                front=measured.get(m, FrontCounters()),
                                engine=_engine(record.base_url, m, states, timeout_s) if record and running else None) for m in names]
    note = ("front: the gateway's own per-request measurements since it started; engine: llama.cpp's /metrics of each instance"
            if running else "the gateway is not running: no measurements (the route applies when it starts)")
    return RouteCounters(public=public, generation=generation, backends=backends, note=note)


def _front_counters(base_url: str | None, public: str, timeout_s: float) -> tuple[dict[str, FrontCounters], int]:
    if base_url is None:
        return {}, -1
    try:
        body = httpx.get(f"{base_url}{COUNTERS_PATH}", params={"public": public}, timeout=timeout_s).json()
        return {m: FrontCounters.model_validate(c) for m, c in body.get("backends", {}).items()}, int(body.get("generation", -1))
    except (httpx.HTTPError, ValueError, AttributeError, ValidationError):
        return {}, -1


def _states(base_url: str, timeout_s: float) -> dict[str, str]:
    try:
        data = httpx.get(f"{base_url}/models", timeout=timeout_s).json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return {}
    return {str(m.get("id")): (m.get("status") or {}).get("value", "?") for m in data if isinstance(m, dict)}


def _engine(base_url: str, model: str, states: dict[str, str], timeout_s: float) -> EngineCounters:
    state = states.get(router_id(model), "not listed")
    if state != "loaded":
        return EngineCounters(state=state, reason="not loaded: its counters start again when it loads (reading them would load it)")
    try:
        answer = httpx.get(f"{base_url}/metrics", params={"model": router_id(model)}, timeout=timeout_s)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        return EngineCounters(state=state, reason=f"its /metrics did not answer ({type(exc).__name__})")
    try:
        scrape = parse(answer.text)
    except ValueError:
        return EngineCounters(state=state, reason="its /metrics is not Prometheus text")
    return EngineCounters(state=state, values={k: v for k, v in scrape.values.items() if k.startswith("llamacpp:")})
