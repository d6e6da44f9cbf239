"""GPU inventory through NVML (pynvml) and matching against a spec's requirement."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from .errors import GPUUnavailable


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    uuid: str
    memory_gb: float
    driver: str
    cuda: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Any of these exists where an NVIDIA driver does (Linux, a container given GPUs, WSL2).
DRIVER_MARKERS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg")


def inventory(markers: tuple[str, ...] = DRIVER_MARKERS) -> tuple[list[GPU], str | None]:
    """All GPUs NVML sees, and why there are none when the list is empty."""
    if not any(os.path.exists(m) for m in markers):
        # importing pynvml costs 30-60 ms of every launch; without a driver it finds nothing
        return [], "no NVIDIA driver on this host"
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return [], f"NVML unavailable ({e}); no NVIDIA driver on this host"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cv = pynvml.nvmlSystemGetCudaDriverVersion()
        cuda = f"{cv // 1000}.{cv % 1000 // 10}"
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total
            gpus.append(GPU(index=i, name=_text(pynvml.nvmlDeviceGetName(h)),
                            uuid=_text(pynvml.nvmlDeviceGetUUID(h)),
                            memory_gb=round(mem / 2**30, 1), driver=driver, cuda=cuda))
        return gpus, None if gpus else "NVML reports no GPUs"
    except pynvml.NVMLError as e:
        return [], f"NVML error: {e}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def matches(gpu: GPU, model: str | None, min_memory_gb: float | None) -> bool:
    if model and model.lower() not in gpu.name.lower():
        return False
    return not (min_memory_gb and gpu.memory_gb < min_memory_gb)


def select(requirement: dict[str, Any] | None, gpus: list[GPU], why_none: str | None) -> list[GPU]:
    """The first ``count`` GPUs that match, or a clear error before anything starts."""
    if not requirement:
        return []
    count = requirement.get("count", 1)
    model, min_mem = requirement.get("model"), requirement.get("min_memory_gb")
    chosen = [g for g in gpus if matches(g, model, min_mem)][:count]
    if len(chosen) < count:
        want = f"{count} GPU(s)" + (f" of model ~{model!r}" if model else "") + (
            f" with >= {min_mem} GB" if min_mem else "")
        have = ", ".join(f"{g.name} ({g.memory_gb} GB)" for g in gpus) or f"none: {why_none}"
        raise GPUUnavailable(f"the spec needs {want}; this host has {have}. Lower "
                             "resources.gpus or run on a host that has them")
    return chosen
