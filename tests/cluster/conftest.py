"""Offline validators for the bundle: Kubernetes' schemas (kubernetes-validate) and the vendored CRD and chart schemas."""

from __future__ import annotations

import gzip
import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from model_serving.cluster import canary

DATA = Path(__file__).parent / "data"
CRDS = {("keda.sh", "ScaledObject"): "keda.sh_scaledobjects.yaml",
        ("monitoring.coreos.com", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
        ("monitoring.coreos.com", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
        ("serving.kserve.io", "LLMInferenceService"): "serving.kserve.io_llminferenceservices.yaml.gz"}
K8S_VERSION = "1.31.0"


@cache
def crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    path = DATA / CRDS[(group, kind)]
    text = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()  # KServe's is 2.7 MB unpacked
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in served, f"{kind} {version} is not served by the vendored CRD ({sorted(served)})"
    return served[version]["schema"]["openAPIV3Schema"]


def validate_manifest(doc: dict[str, Any]) -> None:
    """Core kinds against Kubernetes' own schemas (strict: unknown fields fail), custom ones against their CRD."""
    group, _, version = doc["apiVersion"].rpartition("/")
    if (group, doc["kind"]) == ("gateway.networking.k8s.io", "HTTPRoute"):  # Gateway API's v1 schema, vendored as package data
        assert version == "v1"
        jsonschema.Draft7Validator(canary.schema()).validate(doc)
        assert canary.unknown_fields(doc, canary.schema()) == []
    elif (group, doc["kind"]) in CRDS:
        jsonschema.Draft7Validator(crd_schema(group, doc["kind"], version)).validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def unknown_keys(values: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Keys of `values` the chart's schema does not declare (it allows extra keys, so a typo would pass silently)."""
    if not isinstance(values, dict) or "properties" not in schema:
        if isinstance(values, list) and isinstance(schema.get("items"), dict):
            return [k for i, v in enumerate(values) for k in unknown_keys(v, schema["items"], f"{where}[{i}]")]
        return []
    found = []
    for key, value in values.items():
        if key not in schema["properties"]:
            found.append(f"{where}.{key}")
        else:
            found += unknown_keys(value, schema["properties"][key], f"{where}.{key}")
    return found


def validate_chart_values(values: dict[str, Any]) -> None:
    schema = json.loads((DATA / "production-stack.values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(values)
    assert unknown_keys(values, schema) == []


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    """The three model configs, copied under an allowed root."""
    target = tmp_path / "configs"
    shutil.copytree(DATA / "configs", target)
    return target
