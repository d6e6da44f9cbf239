"""The NVIDIA driver's files a job needs where no container toolkit injects them
(Charliecloud): the libraries and tools the host's CDI spec lists (``nvidia-ctk cdi
generate`` writes it to /etc/cdi or /var/run/cdi), else the driver libraries ``ldconfig -p``
lists and the tools on PATH, the files ``ch-fromhost --nvidia`` would copy into an image.
They are bound read-only under /repro/gpu (a read-only image cannot gain them where the host
keeps them); ``LD_LIBRARY_PATH`` and ``PATH`` name that folder. The device nodes come with
the host's /dev, which ch-run binds; ``CUDA_VISIBLE_DEVICES`` names the assigned GPUs by
UUID, so the job sees exactly those."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
LIBS = re.compile(r"^lib(cuda|cudadebugger|nvidia-[\w.-]+|nvcuvid|nvoptix)\.so(\.\d+)*$")
TOOLS = ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
         "nvidia-cuda-mps-server")
LIB_DIR, BIN_DIR = "/repro/gpu/lib", "/repro/gpu/bin"


def driver_files(cdi_dirs: tuple[Path, ...] = CDI_DIRS,
                 ldconfig: str | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """{target path in the job: host file} and the environment the spec adds; from the CDI
    spec when there is one, else from ``ldconfig`` (its output given, or read)."""
    spec = _cdi_spec(cdi_dirs)
    if spec is not None:
        return _from_cdi(spec)
    if ldconfig is None:
        try:
            ldconfig = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                                      timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            ldconfig = ""
    files = {f"{LIB_DIR}/{name}": path for name, path in parse_ldconfig(ldconfig).items()}
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            files[f"{BIN_DIR}/{tool}"] = Path(found)
    return files, {}


def parse_ldconfig(text: str) -> dict[str, Path]:
    """The driver's 64-bit libraries in ``ldconfig -p`` output: {soname: path}."""
    found: dict[str, Path] = {}
    for line in text.splitlines():
        name, _, rest = line.strip().partition(" (")
        arch, _, path = rest.partition(") => ")
        if LIBS.match(name) and "64" in arch:  # libc6,x86-64 or libc6,AArch64
            found.setdefault(name, Path(path.strip()))
    return found


def _cdi_spec(dirs: tuple[Path, ...]) -> dict[str, Any] | None:
    for folder in dirs:
        for path in sorted([*folder.glob("*.json"), *folder.glob("*.yaml")]):
            try:
                text = path.read_text()
                doc = json.loads(text) if path.suffix == ".json" else _yaml(text)
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and str(doc.get("kind", "")).startswith("nvidia.com/"):
                return doc
    return None


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None


def _from_cdi(spec: dict[str, Any]) -> tuple[dict[str, Path], dict[str, str]]:
    """The spec's common edits (every device's libraries and tools are the same files)."""
    edits = spec.get("containerEdits") or {}
    files: dict[str, Path] = {}
    for m in edits.get("mounts") or []:
        if not isinstance(m, dict):
            continue
        host, inside = str(m.get("hostPath", "")), str(m.get("containerPath", ""))
        name = Path(inside).name
        if LIBS.match(name) or ".so" in name:
            files[f"{LIB_DIR}/{name}"] = Path(host)
        elif "/bin/" in inside:
            files[f"{BIN_DIR}/{name}"] = Path(host)
    env = {}
    for item in edits.get("env") or []:
        k, sep, v = str(item).partition("=")
        if sep and k not in ("NVIDIA_VISIBLE_DEVICES",):
            env[k] = v
    return files, env


def job_paths(env: dict[str, str]) -> dict[str, str]:
    """LD_LIBRARY_PATH and PATH with /repro/gpu's folders first and last."""
    libs = env.get("LD_LIBRARY_PATH", "")
    return {"LD_LIBRARY_PATH": LIB_DIR + (f":{libs}" if libs else ""),
            "PATH": env.get("PATH", "/usr/bin:/bin") + f":{BIN_DIR}"}
