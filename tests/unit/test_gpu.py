"""GPU inventory through NVML, with a stand-in pynvml module: CI machines have no GPU, so
the real library is only ever exercised on a host with an NVIDIA driver."""

import subprocess
import sys
import types

import pytest

from orchestrator import gpu


class FakeNVML(types.ModuleType):
    class NVMLError(Exception):
        pass

    def __init__(self, devices, fail_init=False):
        super().__init__("pynvml")
        self.devices, self.fail_init, self.shut = devices, fail_init, False

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self):
        self.shut = True

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12040

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.devices[i]

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=h["mem"])

    def nvmlDeviceGetName(self, h):
        return h["name"]

    def nvmlDeviceGetUUID(self, h):
        return h["uuid"]


@pytest.fixture
def driver(tmp_path):
    marker = tmp_path / "version"
    marker.write_text("NVRM version: 550.54.15")
    return (str(marker),)


@pytest.mark.process
def test_without_a_driver_nvml_is_not_even_imported(tmp_path):
    code = ("import sys; from orchestrator import gpu; "
            f"print(gpu.inventory(({str(tmp_path / 'absent')!r},))); "
            "print('pynvml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["([], 'no NVIDIA driver on this host')", "False"]


def test_inventory_reads_every_gpu_and_shuts_nvml_down(monkeypatch, driver):
    fake = FakeNVML([{"name": b"NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "mem": 85 * 2**30},
                     {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-2", "mem": 85 * 2**30}])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus, why = gpu.inventory(driver)
    assert why is None and fake.shut
    assert [g.as_dict() for g in gpus] == [
        {"index": i, "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i + 1}",
         "memory_gb": 85.0, "driver": "550.54.15", "cuda": "12.4"} for i in (0, 1)]
    two = gpu.select({"count": 2, "model": "h100", "min_memory_gb": 80}, gpus, why)
    assert [g.uuid for g in two] == ["GPU-1", "GPU-2"]


def test_a_driver_nvml_cannot_talk_to_is_a_reason_not_a_crash(monkeypatch, driver):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([], fail_init=True))
    gpus, why = gpu.inventory(driver)
    assert gpus == [] and "Driver Not Loaded" in why
    with pytest.raises(gpu.GPUUnavailable, match="needs 1 GPU.*none: NVML unavailable"):
        gpu.select({"count": 1}, gpus, why)
