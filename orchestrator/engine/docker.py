"""The Docker engine (and podman's Docker-compatible API) as an executor: a ``JobSpec`` as
one locked-down container, its logs streamed, its end waited for, found again after a crash.
The connection and the SDK's errors are ``docker_api.py``'s (which says why the SDK), images
``docker_images.py``'s, the log stream's decoding ``streams.py``'s.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineUnavailable, ReproError
from . import LABEL_RUN, Interrupted, JobRef, JobSpec, Outcome, WaitTimeout, locked
from .docker_images import DockerImages
from .streams import demux

if TYPE_CHECKING:
    from ..gpu import GPU

LOG_FOLLOW_JOIN_S = 10.0


class DockerEngine(DockerImages):
    """Executor and image backend over one engine endpoint (Docker, or podman's socket)."""

    def version(self) -> dict[str, Any]:
        v = self._call("engine version", lambda: self.api.version())
        name = next((c.get("Name", "") for c in v.get("Components") or []
                     if "engine" in str(c.get("Name", "")).lower()), "")
        return {"version": v.get("Version"), "api": v.get("ApiVersion"), "os": v.get("Os"),
                "arch": v.get("Arch"), "kernel": v.get("KernelVersion"),
                "engine": "podman" if "podman" in name.lower() else "docker"}

    def host(self, gpus: dict[str, Any] | None) -> tuple[dict[str, Any], list[GPU]]:
        from .. import capture, gpu

        inventory, why_none = gpu.inventory() if gpus else ([], None)
        assigned = gpu.select(gpus, inventory, why_none)
        if gpus is None:
            inventory = gpu.inventory()[0]
        return capture.host_facts(self.version(), inventory, assigned), assigned

    def run(self, job: JobSpec, started: Callable[[str], None],
            on_log: Callable[[bytes], None]) -> Outcome:
        host, assigned = self.host(job.gpus)
        with _cpuset_lock():  # choose cores and create, so two launches never pick the same
            cpuset = self._free_cores(job.cpus)
            cid = self._create(job, assigned, podman=host.get("engine") == "podman",
                               cpuset=cpuset)
        host["cpuset"] = cpuset
        outcome = Outcome(job_id=cid, host=host, gpus=assigned)
        try:
            started(cid)
        except BaseException:
            self.cleanup(cid)
            raise
        follower = None
        try:
            # attached before it starts, as `docker run` does: its output as it is written,
            # none of it missed (the log endpoint re-reads the engine's log file: a job
            # printing 200,000 lines was still being read 330 ms after it ended)
            output = self._call("attach to container", lambda: self._attach(cid))
            self._call("start container", lambda: self.api.start(cid))
            follower = self._follow(output, cid, on_log)
            try:
                code, oom = self._wait(cid, job.timeout_s)
                outcome.code, outcome.oom_killed = code, oom
            except WaitTimeout:
                self.cancel(cid, min(job.stop_grace_s, 5))
                outcome.timed_out = True
        except (Interrupted, KeyboardInterrupt):
            outcome.interrupted = True
            try:
                self.cancel(cid, job.stop_grace_s)
            except ReproError:
                pass
        except ReproError as e:
            outcome.lost = str(e)
        finally:
            if follower is not None:
                follower.join(timeout=LOG_FOLLOW_JOIN_S)
            if outcome.lost is None:
                try:
                    outcome.stderr_tail = self._stderr_tail(cid)
                except ReproError:
                    pass
        return outcome

    def _free_cores(self, cpus: float) -> str | None:
        """A cpuset of ``cpus`` whole cores no other repro container of this engine is
        pinned to (``free_cores``); the engine is on this machine (see above)."""
        flt = {"label": [LABEL_RUN], "status": ["created", "running"]}

        def taken() -> Iterator[str]:
            for c in self._call("list containers", lambda: self.api.containers(filters=flt)):
                info = self._call("inspect container", lambda c=c: self.api.inspect_container(
                    c["Id"]), absent="fine") or {}
                yield (info.get("HostConfig") or {}).get("CpusetCpus") or ""

        return free_cores(cpus, taken)

    def _create(self, job: JobSpec, assigned: list[GPU], podman: bool,
                cpuset: str | None = None) -> str:
        from docker.types import DeviceRequest, Mount

        host: dict[str, Any] = {
            "mounts": [Mount(v.target, str(v.source), type="bind", read_only=not v.writable)
                       for v in job.volumes],
            "nano_cpus": int(job.cpus * 1e9), "mem_limit": job.memory_bytes,
            "memswap_limit": job.memory_bytes, "network_mode": job.network,
            "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "pids_limit": 4096,
        }
        if cpuset is not None:
            host["cpuset_cpus"] = cpuset
        if job.tmp_bytes:  # scratch space counts against the job's memory, not the disk
            opts = f"rw,nosuid,nodev,size={job.tmp_bytes},mode=1777"
            host["tmpfs"] = {"/tmp": opts, "/var/tmp": opts}
        host.update(gpu_options([g.uuid for g in assigned], podman))
        if host.get("device_requests"):
            host["device_requests"] = [DeviceRequest(**r) for r in host["device_requests"]]
        config = self._call("create container", lambda: self.api.create_host_config(**host))
        created = self._call(
            "create container", lambda: self.api.create_container(
                job.image, command=job.command, environment=job.env, user=job.user,
                working_dir=job.workdir, labels=job.labels, host_config=config,
                hostname=job.hostname,
                network_disabled=job.network == "none", use_config_proxy=False),
            absent="image")  # the only thing create can miss
        return str(created["Id"])

    def _follow(self, output: Iterator[bytes], cid: str,
                on_log: Callable[[bytes], None]) -> threading.Thread:
        """A thread that hands the job's merged stdout/stderr to ``on_log`` as it comes."""

        def follow() -> None:
            try:
                for chunk in self._stream("follow logs", output):
                    on_log(chunk)
            except ReproError:
                pass  # the wait in the main thread reports a lost engine

        t = threading.Thread(target=follow, name=f"logs-{cid[:12]}", daemon=True)
        t.start()
        return t

    def _attach(self, cid: str) -> Iterator[bytes]:
        """The job's merged stdout/stderr from its start to its end, read in bulk off the
        attach stream (the connection the engine hands over to the container's output:
        multiplexed frames, no HTTP chunks). The SDK's ``attach`` reads each frame with two
        small reads; its request and raw-socket helpers are used here, the frames decoded by
        ``streams.demux``."""
        api = self.api
        res = api.post(api._url("/containers/{0}/attach", cid), None, stream=True,
                       params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 1},
                       headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        sock = api._get_raw_response_socket(res)  # raises for an error status
        api._disable_socket_timeout(sock)  # a quiet job is not a lost engine
        fp = res.raw._fp.fp  # the socket's buffered reader: what it read past the headers
        return demux(iter(lambda: fp.read1(1 << 16), b""))

    def _wait(self, cid: str, timeout: float | None) -> tuple[int, bool]:
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import ReadTimeout

        try:
            res = self.api.wait(cid, timeout=timeout)
        except ReadTimeout as e:
            if timeout is not None:
                raise WaitTimeout from e
            raise EngineUnavailable(f"lost the engine while the job ran: "
                                    f"{self._unreachable()}") from e
        except RequestsConnectionError as e:
            if timeout is not None and "timed out" in str(e).lower():
                raise WaitTimeout from e
            raise EngineUnavailable(f"lost the engine while the job ran: "
                                    f"{self._unreachable()}") from e
        except Exception as e:  # docker.errors.*, requests.*: the engine went away
            raise EngineUnavailable(f"lost the engine while the job ran: "
                                    f"{self._unreachable()}") from e
        state = self._call("inspect container",
                           lambda: self.api.inspect_container(cid))["State"]
        code = int((res or {}).get("StatusCode", state.get("ExitCode", -1)))
        return code, bool(state.get("OOMKilled"))

    def _stderr_tail(self, cid: str, lines: int = 40) -> str:
        data = self._call("read logs", lambda: self.api.logs(cid, stdout=False, stderr=True,
                                                             tail=lines))
        return (data or b"").decode("utf-8", "replace")

    def find(self, labels: dict[str, str]) -> list[JobRef]:
        flt = {"label": [f"{k}={v}" for k, v in labels.items()]}
        found = self._call("list containers",
                           lambda: self.api.containers(all=True, filters=flt))
        return [JobRef(id=c["Id"], labels=c.get("Labels") or {},
                       running=c.get("State") == "running") for c in found]

    def cancel(self, job_id: str, grace_s: float) -> None:
        self._call(f"stop container {job_id[:12]}",
                   lambda: self.api.stop(job_id, timeout=int(grace_s)), absent="fine")

    def cleanup(self, job_id: str) -> None:
        self._call(f"remove container {job_id[:12]}",
                   lambda: self.api.remove_container(job_id, force=True), absent="fine")


def gpu_options(uuids: list[str], podman: bool) -> dict[str, Any]:
    """Host-config options that give a container exactly these GPUs: Docker's nvidia
    device requests by UUID, or CDI device names under podman."""
    if not uuids:
        return {}
    if podman:
        return {"devices": [f"nvidia.com/gpu={u}" for u in uuids]}
    return {"device_requests": [{"driver": "", "count": 0, "device_ids": list(uuids),
                                 "capabilities": [["gpu"]]}]}


def free_cores(cpus: float, taken: Callable[[], Iterable[str]]) -> str | None:
    """A cpuset of ``cpus`` whole cores none of ``taken()`` (other repro jobs' cpusets) holds,
    the lowest first, so the job sees exactly its cores (``os.sched_getaffinity``; the
    runtime makes ``os.cpu_count()`` agree); None for a fractional ``cpus``, when that many
    cores are not free, or with REPRO_PIN_CPUS=0 (the CPU quota still holds). ``taken`` is
    called only when cores are to be pinned."""
    from .. import settings

    want = int(cpus)
    if want != cpus or want < 1 or not settings.pin_cpus():
        return None
    held: set[int] = set()
    for text in taken():
        held |= parse_cpuset(text)
    free = [c for c in sorted(os.sched_getaffinity(0)) if c not in held]
    return ",".join(map(str, free[:want])) if len(free) >= want else None


def parse_cpuset(text: str) -> set[int]:
    """{0, 2, 3} from "0,2-3"; nothing from what does not parse."""
    cores: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            cores.update(range(int(low), int(high or low) + 1))
    return cores


def _cpuset_lock() -> AbstractContextManager[None]:
    """Held while cores are chosen and the container created (all repro processes here)."""
    import tempfile

    return locked(Path(tempfile.gettempdir()) / "repro-cpuset.lock")
