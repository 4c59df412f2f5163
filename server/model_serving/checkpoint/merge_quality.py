"""The merged checkpoint measured against each of its inputs, on the built-in quality set.

Each checkpoint is exported to an f16 GGUF in a hidden scratch folder beside the output (removed afterwards; `exported`,
which the eval on a user's set shares), and quantize/quality.py's comparison runs with the input as the reference and the merge as the candidate: greedy answers
side by side and the perplexity ratio with its paired-bootstrap interval. A merge that scores the text worse than an
input shows as a ratio above 1; one the interval cannot tell apart from the input straddles 1.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from model_serving.checkpoint.export import export_gguf
from model_serving.checkpoint.mergekit_merge import InputQuality
from model_serving.jobs import Progress
from model_serving.quantize.quality import compare_quality
from model_serving.settings import Settings


@contextlib.contextmanager
def exported(settings: Settings, merged: Path, inputs: list[Path], progress: Progress) -> Iterator[tuple[Path, list[Path]]]:
    """The merge's and each input's f16 GGUF, in a hidden scratch folder beside the merge that is removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{merged.name}.quality.", dir=merged.parent))
    try:
        step = 1.0 / (len(inputs) + 1)
        progress.update(0.0, f"exporting {merged.name} and its inputs to f16 GGUF for the comparison")
        merged_gguf = Path(export_gguf(settings, str(merged), str(scratch / "merged.gguf"), progress=progress.span(0.0, step)).output_path)
        ggufs = [Path(export_gguf(settings, str(source), str(scratch / f"input{i}.gguf"), progress=progress.span(step * (i + 1), step * (i + 2))).output_path)
                 for i, source in enumerate(inputs)]
        yield merged_gguf, ggufs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def compare_with_inputs(settings: Settings, merged_gguf: Path, inputs: list[tuple[Path, Path]], progress: Progress) -> list[InputQuality]:
    """One comparison per (input folder, its GGUF) as the reference, the merge's GGUF the candidate, in input order."""
    out = []
    for i, (source, ref) in enumerate(inputs):
        span = progress.span(i / len(inputs), (i + 1) / len(inputs))
        report = compare_quality(settings, ref, merged_gguf, progress=span, candidate_name=f"merge vs {source.name}")
        out.append(InputQuality(input_path=str(source), verdict=report.verdict, ppl_ratio=report.ppl_ratio,
                                ppl_ratio_interval=report.ppl_ratio_interval, input_perplexity=report.reference.perplexity,
                                merged_perplexity=report.candidate.perplexity, agreement_rate=report.agreement_rate,
                                summary=report.summary))
    return out


def measure_against_inputs(settings: Settings, merged: Path, inputs: list[Path], progress: Progress) -> list[InputQuality]:
    """One comparison per input (reference) against the merge (candidate), in input order."""
    with exported(settings, merged, inputs, progress.span(0.0, 0.4)) as (merged_gguf, ggufs):
        return compare_with_inputs(settings, merged_gguf, list(zip(inputs, ggufs, strict=True)), progress.span(0.4, 1.0))
