"""What every bench benchmark writes beside its numbers, so results from different commits compare."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_metadata() -> dict[str, Any]:
    from model_serving import __version__

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "commit": commit,
        "version": __version__,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_1m": os.getloadavg()[0]},  # a shared machine: load explains outliers
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    report = {**report, **run_metadata()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
