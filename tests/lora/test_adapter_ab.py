"""bench quant-ab MERGED.gguf BASE.gguf --adapter ADAPTER.gguf: the merge against the adapter served on its base, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import cli_in_process

from model_serving.errors import InputError
from model_serving.requests import QuantABRequest
from model_serving.serve.embedded.engine import list_models
from model_serving.settings import Settings
from model_serving.verbs import bench_quant_ab


@pytest.mark.slow
def test_the_merge_and_the_served_adapter_side_by_side(settings: Settings, tmp_path: Path, tiny_merged_gguf: Path, tiny_gguf: Path,
                                                       tiny_lora_ggufs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    roots = [x for r in settings.roots for x in ("--root", str(r))]
    code, out, err = cli_in_process(capsys, *roots, "--json", "bench", "quant-ab", str(tiny_merged_gguf), str(tiny_gguf),
                                    "--adapter", str(tiny_lora_ggufs[0]), "--n-requests", "3", "--max-tokens", "8",
                                    "--output-dir", str(tmp_path / "ab"))
    assert code == 0, err
    result = json.loads(out)
    merged, served = result["variants"]
    assert result["kind"] == "adapter" and (merged["label"], served["label"]) == ("merged", "base+adapter") and merged["reference"]
    assert merged["request_throughput"] > 0 and served["request_throughput"] > 0 and served["p95_ttft_ms"] > 0
    assert served["agreement_rate"] >= 0.5, served  # the merge is exact up to rounding: most greedy answers agree
    assert served["size_bytes"] == tiny_gguf.stat().st_size + tiny_lora_ggufs[0].stat().st_size
    assert result["recommended"] in ("merged", "base+adapter", None) and "further adapter" in result["explanation"]  # None: targets missed (a loaded box)
    assert sorted(p.name for p in (tmp_path / "ab").iterdir() if p.is_file()) == ["adapter_ab.json", "adapter_ab.md"]
    assert "# Adapter A/B" in (tmp_path / "ab" / "adapter_ab.md").read_text() and list_models(settings) == []


def test_an_adapter_ab_takes_exactly_the_merged_and_the_base(settings: Settings, tiny_gguf: Path, tiny_lora_ggufs: tuple[Path, Path]) -> None:
    a, b = tiny_lora_ggufs
    with pytest.raises(InputError, match="two GGUFs, the merged one and the base"):
        bench_quant_ab(settings, QuantABRequest(ggufs=[str(tiny_gguf), str(tiny_gguf), str(a)], adapter=str(a)), None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="two files"):
        bench_quant_ab(settings, QuantABRequest(ggufs=[str(tiny_gguf), str(tiny_gguf)], adapter=str(a)), None)  # type: ignore[arg-type]
