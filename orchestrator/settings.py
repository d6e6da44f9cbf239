"""Every ``REPRO_*`` variable, parsed in one place, when it is first needed.

A bad value is a one-line UsageError naming the variable and the form it takes (once,
``REPRO_INPUT_STORE_LIMIT=2g`` was "internal error: invalid literal for int()"). Nothing
here runs at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .errors import UsageError
from .units import parse_duration, parse_size

GiB = 1 << 30
T = TypeVar("T")


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None or not value.strip() else value.strip()


def _parsed(name: str, default: T, parse: Callable[[str, str], T], form: str) -> T:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        return parse(raw, name)
    except ValueError as e:
        raise UsageError(f"{e}; set it to {form}") from None


def size(name: str, default: int) -> int:
    return _parsed(name, default, parse_size, "bytes or like 64g, 512m")


def seconds(name: str, default: float) -> float:
    return _parsed(name, default, parse_duration, "seconds or like 30s, 10m")


def count(name: str, default: int) -> int:
    raw = _raw(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{name} {raw!r} must be a positive whole number")
    return int(raw)


def flag(name: str, default: bool) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name} {raw!r} must be 1/0, true/false, yes/no or on/off")


# -- the variables, one function each (docs/reference.md: "Settings") ----------------------

def home() -> Path:
    """REPRO_HOME: the store (records, artifacts, logs); default ./.repro."""
    raw = _raw("REPRO_HOME")
    return Path(raw).expanduser().resolve() if raw else (Path.cwd() / ".repro").resolve()


def output_limit() -> int:
    """REPRO_OUTPUT_LIMIT: bytes of one output file (default 64 GiB)."""
    return size("REPRO_OUTPUT_LIMIT", 64 * GiB)


def run_output_limit() -> int:
    """REPRO_RUN_OUTPUT_LIMIT: bytes of all of one run's outputs together (default 256 GiB)."""
    return size("REPRO_RUN_OUTPUT_LIMIT", 256 * GiB)


def max_outputs() -> int:
    """REPRO_MAX_OUTPUTS: output files a run may record (default 10,000)."""
    return count("REPRO_MAX_OUTPUTS", 10_000)


def input_store_limit() -> int:
    """REPRO_INPUT_STORE_LIMIT: input files up to this size are copied into the store
    (default 1 GiB)."""
    return size("REPRO_INPUT_STORE_LIMIT", GiB)


def tmp_size(memory_bytes: int) -> int:
    """REPRO_TMP_SIZE: the job's /tmp tmpfs (default: its memory limit)."""
    return size("REPRO_TMP_SIZE", memory_bytes)


def stop_grace() -> float:
    """REPRO_STOP_GRACE: seconds between SIGTERM and SIGKILL when a run is stopped
    (default 10)."""
    return seconds("REPRO_STOP_GRACE", 10.0)


def archive_images() -> bool:
    """REPRO_ARCHIVE_IMAGES: archive each image into the store on first use (default on)."""
    return flag("REPRO_ARCHIVE_IMAGES", True)


def debian_mirror() -> str | None:
    """REPRO_DEBIAN_MIRROR: the Debian mirror debootstrap uses for rootfs recipes."""
    return _raw("REPRO_DEBIAN_MIRROR")


def pin_cpus() -> bool:
    """REPRO_PIN_CPUS: pin a whole-number ``cpus`` to that many free cores with a cpuset
    (default on)."""
    return flag("REPRO_PIN_CPUS", True)


def ca_bundle() -> Path | None:
    """REPRO_CA_BUNDLE: the CA certificates a lock step (pip in a build) trusts, mounted for
    that step only (default: SSL_CERT_FILE, else the system bundle). A TLS-inspecting proxy's
    certificate is in the host's bundle, not in the image's."""
    for raw in (_raw("REPRO_CA_BUNDLE"), _raw("SSL_CERT_FILE")):
        if raw is not None:
            path = Path(raw).expanduser()
            if not path.is_file():
                raise UsageError(f"CA bundle {path} (REPRO_CA_BUNDLE or SSL_CERT_FILE) is not "
                                 "a file")
            return path.resolve()
    return next((p for p in map(Path, CA_BUNDLES) if p.is_file()), None)


CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
              "/etc/ssl/cert.pem")


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH: the time builds stamp files with (default 315532800,
    1980-01-01: zip, and so wheels built from source, cannot hold earlier times)."""
    return count("SOURCE_DATE_EPOCH", 315532800)


def build_memory() -> int:
    """REPRO_BUILD_MEMORY: the memory a lock step's container may use (default 8g)."""
    return size("REPRO_BUILD_MEMORY", 8 << 30)


def build_timeout() -> float:
    """REPRO_BUILD_TIMEOUT: how long a lock step may take (default 30m)."""
    return seconds("REPRO_BUILD_TIMEOUT", 1800.0)


def executor(given: str | None = None) -> str:
    """--executor, else REPRO_EXECUTOR: where runs go, lower-cased (default local: this
    machine's engine; docker and podman name an engine, slurm and k8s a scheduler). Checked
    by ``scheduler.where`` and ``engine.connect``, which read it only through here."""
    return ((given or "").strip() or _raw("REPRO_EXECUTOR") or "local").strip().lower()


def image_cache() -> Path:
    """REPRO_IMAGE_CACHE: where images are unpacked for Charliecloud (per user, per machine;
    a node's local disk serves best), else $XDG_CACHE_HOME/repro/images (~/.cache/...)."""
    given = _raw("REPRO_IMAGE_CACHE")
    if given:
        return Path(given).expanduser()
    base = _raw("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "repro" / "images"


def ch_limits() -> str | None:
    """REPRO_CH_LIMITS: how a Charliecloud job's limits are held when not the default (a
    cgroup of repro's where it may make one): ``rlimit`` on a node where repro's own cgroups
    are unwelcome, ``slurm`` to leave them to the Slurm job's cgroup."""
    raw = _raw("REPRO_CH_LIMITS")
    if raw is not None and raw not in ("rlimit", "slurm"):
        raise UsageError(f"REPRO_CH_LIMITS={raw[:40]!r}: set it to rlimit or slurm, or leave it "
                         "unset (a cgroup of repro's where it may make one)")
    return raw


def k8s_namespace() -> str | None:
    """REPRO_K8S_NAMESPACE: the namespace a rendered Kubernetes Job names (none: the
    context's own)."""
    return _raw("REPRO_K8S_NAMESPACE")


def k8s_fetch_image() -> str:
    """REPRO_K8S_FETCH_IMAGE: an image with repro installed, for the Job's init container
    that fetches the run from the store (default repro:latest)."""
    return _raw("REPRO_K8S_FETCH_IMAGE") or "repro:latest"


def user() -> str:
    """REPRO_USER: who runs are recorded as launched by (default: git's user.email, else
    the login name)."""
    raw = _raw("REPRO_USER")
    if raw:
        return raw[:256]
    import subprocess

    try:
        email = subprocess.run(["git", "config", "--get", "user.email"], capture_output=True,
                               text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        email = ""
    if email:
        return email[:256]
    import getpass

    try:
        return getpass.getuser()[:256]
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def ui_token() -> str | None:
    """REPRO_UI_TOKEN: the dashboard's token (never from the command line)."""
    return os.environ.get("REPRO_UI_TOKEN") or None
