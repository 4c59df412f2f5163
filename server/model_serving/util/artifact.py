"""An artifact: one output a step writes, the sidecar recording what it was made from, and the one rule for reusing it.

A step that writes a file (export, quantize, merge) reuses an earlier output only when its sidecar
records the same inputs and settings and the output still holds the bytes the sidecar recorded.
The step and the deploy plan ask the same `Artifact.recorded`, so a plan never promises a reuse
the step then refuses. The output is written through a partial unique to its writer
(`.<output>.<pid>-<start>.<random>.partial`), the name `clean` recognises.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_serving.util.filehash import HashCache
from model_serving.util.paths import atomic_folder, atomic_output, partial_path, sha256_file, write_text_atomic

# What a sidecar must record for a reuse: a value it must equal, or a test of the recorded value.
Expected = Mapping[str, Any | Callable[[Any], bool]]


@dataclass(frozen=True)
class Artifact:
    """An output file (or folder) and its sidecar `<output><suffix>`.

    `output_key` names the sidecar field that holds the output's sha256 (checked against the file, by
    the stat-keyed cache); a folder has none, and `marker` names the file whose presence says it is
    complete (e.g. config.json of a checkpoint).
    """

    output: Path
    suffix: str = ".json"
    output_key: str | None = "output_sha256"
    marker: str | None = None

    @property
    def sidecar(self) -> Path:
        return self.output.with_name(self.output.name + self.suffix)

    def present(self) -> bool:
        if self.marker is not None:
            return (self.output / self.marker).is_file()
        return self.output.is_file()

    def read(self) -> dict[str, Any] | None:
        """The sidecar's record, or None when it is missing or not a JSON object."""
        try:
            data = json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def recorded(self, expected: Expected, hashes: HashCache | None = None) -> dict[str, Any] | None:
        """The sidecar's record when the output is there, made from `expected`, and unchanged since; else None."""
        if not self.present():
            return None
        record = self.read()
        if record is None or not all(_matches(record.get(key), want) for key, want in expected.items()):
            return None
        if self.output_key is not None:
            sha = record.get(self.output_key)
            if not isinstance(sha, str) or (hashes.sha256(self.output) if hashes else sha256_file(self.output)) != sha:
                return None  # the file was changed or replaced since it was recorded
        return record

    def record(self, payload: Mapping[str, Any] | str) -> None:
        """Write the sidecar whole or not at all."""
        text = payload if isinstance(payload, str) else json.dumps(payload, indent=2)
        write_text_atomic(self.sidecar, text)

    def partial(self) -> Path:
        """A fresh partial beside the output, named for this writer."""
        return partial_path(self.output, folder=self.marker is not None)

    @contextlib.contextmanager
    def written(self, *, overwrite: bool = False) -> Iterator[Path]:
        """Yield the partial to write; it takes the output's name only if the block succeeds."""
        if self.marker is not None:
            with atomic_folder(self.output) as tmp:
                yield tmp
        else:
            with atomic_output(self.output, overwrite=overwrite) as tmp:
                yield tmp


def _matches(recorded: Any, want: Any) -> bool:
    return bool(want(recorded)) if callable(want) else recorded == want
