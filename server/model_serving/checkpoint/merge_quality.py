"""The merged checkpoint measured against each of its inputs, on the built-in quality set.

Each checkpoint is exported to an f16 GGUF in a hidden scratch folder beside the output (removed afterwards), and
quantize/quality.py's comparison runs with the input as the reference and the merge as the candidate: greedy answers
side by side and the perplexity ratio with its paired-bootstrap interval. A merge that scores the text worse than an
input shows as a ratio above 1; one the interval cannot tell apart from the input straddles 1.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from model_serving.checkpoint.export import export_gguf
from model_serving.checkpoint.mergekit_merge import InputQuality
from model_serving.jobs import Progress
from model_serving.quantize.quality import compare_quality
from model_serving.settings import Settings


def measure_against_inputs(settings: Settings, merged: Path, inputs: list[Path], progress: Progress) -> list[InputQuality]:
    """One comparison per input (reference) against the merge (candidate), in input order."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{merged.name}.quality.", dir=merged.parent))
    try:
        step = 1.0 / (len(inputs) + 1)
        progress.update(0.0, f"exporting {merged.name} to f16 GGUF for the quality check")
        merged_gguf = Path(export_gguf(settings, str(merged), str(scratch / "merged.gguf"), progress=progress.span(0.0, step / 2)).output_path)
        out = []
        for i, source in enumerate(inputs):
            span = progress.span(step * (i + 1), step * (i + 2))
            ref = Path(export_gguf(settings, str(source), str(scratch / f"input{i}.gguf"), progress=span.span(0.0, 0.3)).output_path)
            report = compare_quality(settings, ref, merged_gguf, progress=span.span(0.3, 1.0), candidate_name=f"merge vs {source.name}")
            out.append(InputQuality(input_path=str(source), verdict=report.verdict, ppl_ratio=report.ppl_ratio,
                                    ppl_ratio_interval=report.ppl_ratio_interval, input_perplexity=report.reference.perplexity,
                                    merged_perplexity=report.candidate.perplexity, agreement_rate=report.agreement_rate,
                                    summary=report.summary))
        return out
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
