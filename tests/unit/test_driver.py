"""Which NVIDIA driver files a Charliecloud job gets (engine/driver.py). This machine has no
GPU: the CDI spec and ldconfig's listing are written here, in the forms nvidia-ctk and
glibc write them; scripts/gpu-charliecloud.sh checks the real thing on a GPU machine."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.engine import JobSpec, Volume
from orchestrator.engine.ch_stage import Stage
from orchestrator.engine.driver import BIN_DIR, LIB_DIR, driver_files, parse_ldconfig
from orchestrator.gpu import GPU

LDCONFIG = """\
1234 libs found in cache `/etc/ld.so.cache'
\tlibnvidia-ml.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libnvidia-ml.so.1
\tlibcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1
\tlibcuda.so.1 (libc6) => /lib/i386-linux-gnu/libcuda.so.1
\tlibcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12
\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6
"""


def test_ldconfig_gives_the_drivers_64_bit_libraries_and_nothing_else():
    found = parse_ldconfig(LDCONFIG)
    assert found == {"libnvidia-ml.so.1": Path("/lib/x86_64-linux-gnu/libnvidia-ml.so.1"),
                     "libcuda.so.1": Path("/lib/x86_64-linux-gnu/libcuda.so.1")}
    files, env = driver_files(cdi_dirs=(), ldconfig=LDCONFIG)
    assert files[f"{LIB_DIR}/libcuda.so.1"] == Path("/lib/x86_64-linux-gnu/libcuda.so.1")
    assert env == {}


def test_a_cdi_spec_is_preferred_and_its_libraries_and_tools_are_bound(tmp_path):
    cdi = tmp_path / "cdi"
    cdi.mkdir()
    (cdi / "nvidia.json").write_text(json.dumps({
        "cdiVersion": "0.5.0", "kind": "nvidia.com/gpu",
        "devices": [{"name": "GPU-1", "containerEdits": {"deviceNodes": [
            {"path": "/dev/nvidia0"}]}}],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_CTK_LIBCUDA_DIR=/usr/lib64"],
            "mounts": [
                {"hostPath": "/usr/lib64/libcuda.so.570.86", "containerPath":
                 "/usr/lib64/libcuda.so.570.86", "options": ["ro", "bind"]},
                {"hostPath": "/usr/bin/nvidia-smi", "containerPath": "/usr/bin/nvidia-smi"},
                {"hostPath": "/lib/firmware/nvidia/gsp.bin",
                 "containerPath": "/lib/firmware/nvidia/gsp.bin"}]}}))
    files, env = driver_files(cdi_dirs=(cdi,), ldconfig=LDCONFIG)
    assert files == {f"{LIB_DIR}/libcuda.so.570.86": Path("/usr/lib64/libcuda.so.570.86"),
                     f"{BIN_DIR}/nvidia-smi": Path("/usr/bin/nvidia-smi")}
    assert env == {"NVIDIA_CTK_LIBCUDA_DIR": "/usr/lib64"}


def test_a_gpu_jobs_stage_binds_the_driver_and_names_the_gpus_by_uuid(tmp_path, monkeypatch):
    lib = tmp_path / "libcuda.so.1"
    lib.write_bytes(b"\x7fELF")
    monkeypatch.setattr("orchestrator.engine.driver.driver_files",
                        lambda: ({f"{LIB_DIR}/libcuda.so.1": lib}, {}))
    monkeypatch.setattr("orchestrator.engine.ch_stage.tool", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr("orchestrator.engine.ch_stage.private", lambda *_: tmp_path)
    (tmp_path / "image").mkdir()
    code = tmp_path / "code"
    code.mkdir()
    job = JobSpec(run_id="r" * 16, image="sha256:" + "a" * 64, command=["python3", "x.py"],
                  volumes=[Volume("code", code, "/repro/code", writable=True)])
    gpu = GPU(index=0, uuid="GPU-1234", name="NVIDIA H100", memory_gb=80.0, driver="570",
              cuda="12.8")
    stage = Stage.make("ch-test", job, tmp_path / "image", {"env": ["PATH=/usr/bin:/bin"]},
                       [gpu])
    env = dict(line.split("=", 1) for line in (stage.folder / "env").read_text().split("\n")
               if line)
    assert env["CUDA_VISIBLE_DEVICES"] == "'GPU-1234'"
    assert env["LD_LIBRARY_PATH"] == f"'{LIB_DIR}'" and env["PATH"].endswith(f":{BIN_DIR}'")
    assert f"{lib} " in stage.script and (stage.folder / "skel-repro" / "gpu" / "lib" /
                                          "libcuda.so.1").exists()
    assert f":{LIB_DIR}/libcuda.so.1" in stage.script
