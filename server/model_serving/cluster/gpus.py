"""Known accelerators and what one of each holds.

Memory is the total that `nvidia-smi --query-gpu=memory.total` reports (MiB), not the marketing
figure: vLLM's gpu_memory_utilization is a fraction of that total. Any other device takes
`--gpu-memory-gb` (GiB per GPU). Compute capability and memory bandwidth are NVIDIA's published figures
(CUDA GPUs table and each card's datasheet); they decide the weight format (cluster/formats.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from model_serving.errors import InputError

Kind = Literal["datacenter", "consumer", "cpu"]


# Below this bandwidth a card decodes at the pace it reads weights, even at a full batch: L4, A10G and T4 pair
# 16-24 GB with 300-600 GB/s, where L40S, A100 and H100 have 0.86-4.8 TB/s.
MEMORY_BOUND_GBS = 700.0


class GpuSpec(BaseModel):
    name: str
    memory_bytes: int
    kind: Kind
    source: str = ""
    compute_capability: float | None = None  # None: not known (a GPU given by its memory only)
    bandwidth_gbs: float | None = None  # memory bandwidth, GB/s

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / 2**30

    @property
    def memory_bound(self) -> bool:
        """A consumer card, or one whose memory bandwidth is low for its size (the L4 class)."""
        return self.kind == "consumer" or (self.bandwidth_gbs is not None and self.bandwidth_gbs < MEMORY_BOUND_GBS)


MIB = 2**20
GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        # nvidia-smi on an H100 SXM5 80GB (HBM3): 81559 MiB
        GpuSpec(name="H100-80GB", memory_bytes=81559 * MIB, kind="datacenter", source="nvidia-smi, H100 SXM5",
                compute_capability=9.0, bandwidth_gbs=3350),
        # nvidia-smi on an H200 SXM 141GB (HBM3e): 143771 MiB
        GpuSpec(name="H200-141GB", memory_bytes=143771 * MIB, kind="datacenter", source="nvidia-smi, H200 SXM",
                compute_capability=9.0, bandwidth_gbs=4800),
        # nvidia-smi on an A100 SXM4 80GB: 81920 MiB
        GpuSpec(name="A100-80GB", memory_bytes=81920 * MIB, kind="datacenter", source="nvidia-smi, A100 SXM4 80GB",
                compute_capability=8.0, bandwidth_gbs=2039),
        # nvidia-smi on an A100 SXM4 40GB: 40960 MiB
        GpuSpec(name="A100-40GB", memory_bytes=40960 * MIB, kind="datacenter", source="nvidia-smi, A100 SXM4 40GB",
                compute_capability=8.0, bandwidth_gbs=1555),
        # nvidia-smi on an L40S: 46068 MiB (48 GB GDDR6 with ECC)
        GpuSpec(name="L40S-48GB", memory_bytes=46068 * MIB, kind="datacenter", source="nvidia-smi, L40S",
                compute_capability=8.9, bandwidth_gbs=864),
        # nvidia-smi on an L4 (GCP g2): 23034 MiB
        GpuSpec(name="L4-24GB", memory_bytes=23034 * MIB, kind="datacenter", source="nvidia-smi, L4",
                compute_capability=8.9, bandwidth_gbs=300),
        # nvidia-smi on an A10G (AWS g5): 23028 MiB
        GpuSpec(name="A10G-24GB", memory_bytes=23028 * MIB, kind="datacenter", source="nvidia-smi, A10G",
                compute_capability=8.6, bandwidth_gbs=600),
        # nvidia-smi on a T4 (16 GB GDDR6): 15360 MiB
        GpuSpec(name="T4-16GB", memory_bytes=15360 * MIB, kind="datacenter", source="nvidia-smi, T4",
                compute_capability=7.5, bandwidth_gbs=320),
        # nvidia-smi on a GeForce RTX 4090: 24564 MiB
        GpuSpec(name="RTX4090-24GB", memory_bytes=24564 * MIB, kind="consumer", source="nvidia-smi, RTX 4090",
                compute_capability=8.9, bandwidth_gbs=1008),
    )
}
CPU = GpuSpec(name="cpu", memory_bytes=0, kind="cpu", source="no accelerator")


def resolve_gpu(name: str, memory_gb: float | None = None) -> GpuSpec:
    """The named GPU, or any name with its memory given (treated as a datacenter GPU unless it is 'cpu')."""
    if name.lower() == "cpu":
        return CPU
    if memory_gb is not None:
        known = GPUS.get(name)
        kind: Kind = known.kind if known else "datacenter"
        return GpuSpec(name=name, memory_bytes=int(memory_gb * 2**30), kind=kind, source="--gpu-memory-gb",
                       compute_capability=known.compute_capability if known else None, bandwidth_gbs=known.bandwidth_gbs if known else None)
    for key, spec in GPUS.items():
        if key.lower() == name.lower():
            return spec
    raise InputError(f"Unknown GPU {name!r}; known: {', '.join(GPUS)}, cpu.",
                     "Pick one of those, or give its memory per GPU with --gpu-memory-gb (GiB, nvidia-smi's total / 1024).")
