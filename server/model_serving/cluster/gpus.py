"""Known accelerators and what one of each holds.

Memory is the total that `nvidia-smi --query-gpu=memory.total` reports (MiB), not the marketing
figure: vLLM's gpu_memory_utilization is a fraction of that total. Any other device takes
`--gpu-memory-gb` (GiB per GPU).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from model_serving.errors import InputError

Kind = Literal["datacenter", "consumer", "cpu"]


class GpuSpec(BaseModel):
    name: str
    memory_bytes: int
    kind: Kind
    source: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / 2**30


MIB = 2**20
GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        # nvidia-smi on an H100 SXM5 80GB (HBM3): 81559 MiB
        GpuSpec(name="H100-80GB", memory_bytes=81559 * MIB, kind="datacenter", source="nvidia-smi, H100 SXM5"),
        # nvidia-smi on an H200 SXM 141GB (HBM3e): 143771 MiB
        GpuSpec(name="H200-141GB", memory_bytes=143771 * MIB, kind="datacenter", source="nvidia-smi, H200 SXM"),
        # nvidia-smi on an A100 SXM4 80GB: 81920 MiB
        GpuSpec(name="A100-80GB", memory_bytes=81920 * MIB, kind="datacenter", source="nvidia-smi, A100 SXM4 80GB"),
        # nvidia-smi on an A100 SXM4 40GB: 40960 MiB
        GpuSpec(name="A100-40GB", memory_bytes=40960 * MIB, kind="datacenter", source="nvidia-smi, A100 SXM4 40GB"),
        # nvidia-smi on an L40S: 46068 MiB (48 GB GDDR6 with ECC)
        GpuSpec(name="L40S-48GB", memory_bytes=46068 * MIB, kind="datacenter", source="nvidia-smi, L40S"),
        # nvidia-smi on an L4 (GCP g2): 23034 MiB
        GpuSpec(name="L4-24GB", memory_bytes=23034 * MIB, kind="datacenter", source="nvidia-smi, L4"),
        # nvidia-smi on an A10G (AWS g5): 23028 MiB
        GpuSpec(name="A10G-24GB", memory_bytes=23028 * MIB, kind="datacenter", source="nvidia-smi, A10G"),
        # nvidia-smi on a T4 (16 GB GDDR6): 15360 MiB
        GpuSpec(name="T4-16GB", memory_bytes=15360 * MIB, kind="datacenter", source="nvidia-smi, T4"),
        # nvidia-smi on a GeForce RTX 4090: 24564 MiB
        GpuSpec(name="RTX4090-24GB", memory_bytes=24564 * MIB, kind="consumer", source="nvidia-smi, RTX 4090"),
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
        return GpuSpec(name=name, memory_bytes=int(memory_gb * 2**30), kind=kind, source="--gpu-memory-gb")
    for key, spec in GPUS.items():
        if key.lower() == name.lower():
            return spec
    raise InputError(f"Unknown GPU {name!r}; known: {', '.join(GPUS)}, cpu.",
                     "Pick one of those, or give its memory per GPU with --gpu-memory-gb (GiB, nvidia-smi's total / 1024).")
