"""The canary split in the bundle: a Gateway API HTTPRoute whose one rule weighs two versions' Services.

Each version runs as its own Deployment and Service; the route sends each request to one of them in proportion
to its weight, the standard way (gateway.networking.k8s.io/v1 backendRefs weights). Both versions serve the same
model name, so a client keeps its base URL and `model`. The route is checked before the bundle is written: against
the HTTPRoute v1 schema of Gateway API's published CRD (vendored in data/, see data/README.md), with unknown fields
refused as the API server's strict field validation does, and each backendRef against the bundle's own Services.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from model_serving.errors import InputError

API_VERSION = "gateway.networking.k8s.io/v1"
GATEWAY = "inference-gateway"  # the Gateway the route attaches to: the user's, named in the file's header
SERVICE_PORT = 80


@cache
def schema() -> dict[str, Any]:
    text = resources.files("model_serving.cluster").joinpath("data/httproute.v1.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def http_route(name: str, labels: dict[str, str], weights: dict[str, int]) -> dict[str, Any]:
    """One rule for every path, its backendRefs the Services by name with their weights."""
    refs = [{"name": service, "port": SERVICE_PORT, "weight": weight} for service, weight in weights.items()]
    return {"apiVersion": API_VERSION, "kind": "HTTPRoute", "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"parentRefs": [{"name": GATEWAY}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": refs}]}}


def unknown_fields(value: Any, node: dict[str, Any], where: str = "") -> list[str]:
    """Fields the schema does not declare: CRD schemas prune them silently, and `kubectl apply` (strict) refuses them."""
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [k for i, v in enumerate(value) for k in unknown_fields(v, node["items"], f"{where}[{i}]")]
    if not isinstance(value, dict) or "properties" not in node:
        return []
    found = []
    for key, sub in value.items():
        if key not in node["properties"]:
            found.append(f"{where}.{key}")
        else:
            found += unknown_fields(sub, node["properties"][key], f"{where}.{key}")
    return found


def _backends(doc: dict[str, Any], services: dict[str, int]) -> list[str]:
    problems = []
    for rule in doc.get("spec", {}).get("rules", []):
        weights = [ref.get("weight", 1) for ref in rule.get("backendRefs", [])]
        if weights and not any(isinstance(w, int) and w > 0 for w in weights):
            problems.append("no backendRef of a rule has a weight above 0: the rule would send nothing")
        for ref in rule.get("backendRefs", []):
            if ref.get("kind", "Service") != "Service" or ref.get("group", "") != "":
                problems.append(f"backendRef {ref.get('name')!r} is not a core Service")
            elif ref.get("name") not in services:
                problems.append(f"backendRef {ref.get('name')!r} names no Service in the bundle ({', '.join(sorted(services))})")
            elif ref.get("port") != services[ref["name"]]:
                problems.append(f"backendRef {ref['name']!r} port {ref.get('port')} is not the Service's port {services[ref['name']]}")
    return problems


def check_route(doc: dict[str, Any], services: dict[str, int]) -> None:
    """Refuses a route the cluster would refuse or that points past the bundle; `services` maps each Service to its port."""
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "HTTPRoute":
        raise InputError(f"Not an HTTPRoute of {API_VERSION}: {doc.get('apiVersion')}/{doc.get('kind')}.", "Build it with http_route().")
    validator = jsonschema.Draft7Validator(schema())
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(doc)]
    problems += [f"{path}: not a field of HTTPRoute v1" for path in unknown_fields(doc, schema())]
    problems += _backends(doc, services)
    if problems:
        raise InputError(f"The HTTPRoute is not valid: {'; '.join(problems[:6])}.",
                         "Each backendRef needs a Service of the bundle, its port and a weight from 0 to 1000000 (at least one above 0).")
