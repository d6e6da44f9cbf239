"""The Docker engine (and podman's Docker-compatible API) through the docker SDK.

The only module that talks to a container engine. docker-py brings what a hand-written
client would have to redo: Docker contexts (Docker Desktop, rootless), credentials from
``~/.docker/config.json`` and credential helpers for private registries, TLS
(``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``) and API version negotiation. Two things it does
by default are turned off: it never injects the config file's proxy settings into containers
or builds (``use_config_proxy=False``: that would change the recorded environment silently),
and its errors never leave this module: ``docker.errors`` and ``requests`` exceptions become
one-line ``ReproError``s here, chained with ``from``.

Jobs see repro's files through bind mounts, so an engine that cannot see this machine's
files (``ssh://``, ``tcp://`` to another host) is refused with the reason, unless
REPRO_ENGINE_SHARES_FILES=1 says it does (docker:dind sharing the build folder).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import EngineUnavailable, ImageError, ReproError
from ..hashing import shown
from . import (
    LABEL_RUN,
    BuildFailed,
    Interrupted,
    JobRef,
    JobSpec,
    Outcome,
    WaitTimeout,
    repository_of,
)
from .recipe import context_files

if TYPE_CHECKING:
    import docker

    from ..gpu import GPU

DEFAULT_HOST = "unix:///var/run/docker.sock"
PODMAN_HOST = "unix:///run/podman/podman.sock"
LOOPBACK = ("localhost", "127.0.0.1", "::1")
LOG_FOLLOW_JOIN_S = 10.0
STEP = re.compile(r"^\s*(?:Step|STEP) (\d+)/\d+\s*:\s*(.*)$")  # docker's and podman's
BUILD_TAIL = 8  # lines of a failed build step's output kept for the error
BUILDER_CHATTER = re.compile(r"^\s*(---> |Removing intermediate container )")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
OUTSIDE_DOCKERFILE = ".repro.Dockerfile"  # a recipe's Dockerfile, when outside its context


class DockerEngine:
    """Executor and image backend over one engine endpoint (Docker, or podman's socket)."""

    name = "docker"

    def __init__(self, podman: bool = False) -> None:
        self.podman = podman
        if podman:
            self.name = "podman"
        self._api: docker.APIClient | None = None
        self._where = ""

    # -- connection and errors --------------------------------------------------------------

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            self._api = self._connect()
        return self._api

    def _connect(self) -> docker.APIClient:
        import docker
        from docker.context import ContextAPI
        from docker.errors import DockerException
        from docker.utils import kwargs_from_env

        env = dict(os.environ)
        if self.podman and not env.get("DOCKER_HOST"):
            env["DOCKER_HOST"] = os.environ.get("REPRO_PODMAN_HOST", PODMAN_HOST)
        try:
            params = kwargs_from_env(environment=env)
            if "base_url" not in params:  # DOCKER_HOST unset: the CLI's current context
                for k, v in ContextAPI.kwargs_from_context(environment=env).items():
                    params.setdefault(k, v)
        except (DockerException, OSError, ValueError) as e:
            raise EngineUnavailable(f"cannot read the Docker configuration: {e}; check "
                                    "DOCKER_HOST, DOCKER_CONTEXT and ~/.docker") from e
        self._where = str(params.get("base_url") or DEFAULT_HOST)
        _check_sees_files(self._where)
        try:
            return docker.APIClient(version="auto", timeout=120, **params)
        except DockerException as e:
            raise EngineUnavailable(self._unreachable()) from e

    def _unreachable(self) -> str:
        return (f"cannot reach the {'podman' if self.podman else 'Docker'} engine at "
                f"{self._where or DEFAULT_HOST}; start it with `scripts/ensure-docker` (or "
                "`systemctl start docker`) and check you may use its socket")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, absent: str = "refused",
              **kwargs: Any) -> Any:
        """``fn``, its errors as ReproErrors. ``absent`` says what a 404 means: "refused"
        (an error like any other), "image" (ImageError) or "fine" (None)."""
        from docker.errors import APIError, DockerException
        from requests.exceptions import RequestException

        try:
            return fn(*args, **kwargs)
        except APIError as e:
            if e.status_code == 404 and absent == "fine":
                return None
            if e.status_code == 404 and absent == "image":
                raise ImageError(f"{what}: image not found ({_explain(e)})") from e
            raise EngineUnavailable(f"{what}: the engine refused: {_explain(e)}") from e
        except (DockerException, RequestException, OSError) as e:
            raise EngineUnavailable(f"{what}: {self._unreachable()}") from e

    def _stream(self, what: str, stream: Iterable[Any]) -> Iterator[Any]:
        """A streamed answer, its errors translated (an engine lost mid-stream)."""
        from docker.errors import APIError, DockerException
        from requests.exceptions import RequestException

        try:
            yield from stream
        except APIError as e:
            raise EngineUnavailable(f"{what}: the engine refused: {_explain(e)}") from e
        except (DockerException, RequestException, OSError) as e:
            raise EngineUnavailable(f"{what}: lost the engine at {self._where} ({e})") from e

    def _progress(self, what: str, stream: Iterable[dict[str, Any]]) -> Iterator[dict]:
        for chunk in self._stream(what, stream):
            if isinstance(chunk, dict) and chunk.get("error"):
                raise ImageError(f"{what}: {str(chunk['error']).strip()}")
            yield chunk

    # -- facts ------------------------------------------------------------------------------

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

    # -- jobs -------------------------------------------------------------------------------

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
            self._call("start container", lambda: self.api.start(cid))
            follower = self._follow(cid, on_log)
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
        """A cpuset of ``cpus`` whole cores no other repro job of this engine is pinned to,
        the lowest first, so the job sees exactly its cores (``os.sched_getaffinity``; the
        runtime makes ``os.cpu_count()`` agree); None for a fractional ``cpus``, when that
        many cores are not free, or with REPRO_PIN_CPUS=0 (the CPU quota still holds)."""
        from .. import settings

        want = int(cpus)
        if want != cpus or want < 1 or not settings.pin_cpus():
            return None
        cores = sorted(os.sched_getaffinity(0))  # the engine is on this machine (see above)
        flt = {"label": [LABEL_RUN], "status": ["created", "running"]}
        taken: set[int] = set()
        for c in self._call("list containers", lambda: self.api.containers(filters=flt)):
            info = self._call("inspect container", lambda c=c: self.api.inspect_container(
                c["Id"]), absent="fine") or {}
            taken |= parse_cpuset((info.get("HostConfig") or {}).get("CpusetCpus") or "")
        free = [c for c in cores if c not in taken]
        return ",".join(map(str, free[:want])) if len(free) >= want else None

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

    def _follow(self, cid: str, on_log: Callable[[bytes], None]) -> threading.Thread:
        """A thread that hands the job's merged stdout/stderr to ``on_log`` as it comes."""

        def follow() -> None:
            try:
                for chunk in self._stream("follow logs", self._logs(cid)):
                    on_log(chunk)
            except ReproError:
                pass  # the wait in the main thread reports a lost engine

        t = threading.Thread(target=follow, name=f"logs-{cid[:12]}", daemon=True)
        t.start()
        return t

    def _logs(self, cid: str) -> Iterator[bytes]:
        """The job's merged stdout/stderr as it comes, read in bulk: the SDK reads each log
        frame with two small reads, and the engine sends every line as its own frame in its
        own HTTP chunk, so a job printing 200,000 lines took 3.2 s to stream that way and
        1.9 s this way (BENCHMARKS.md). Uses the SDK's own request and raw-socket helpers."""
        api = self.api
        res = api._get(api._url("/containers/{0}/logs", cid), stream=True,
                       params={"stdout": 1, "stderr": 1, "follow": 1, "tail": "all"})
        sock = api._get_raw_response_socket(res)  # raises for an error status
        api._disable_socket_timeout(sock)  # a quiet job is not a lost engine
        fp = res.raw._fp.fp  # the socket's buffered reader, as the SDK itself reads it
        raw = iter(lambda: fp.read1(1 << 16), b"")
        yield from demux(dechunk(raw) if res.raw.chunked else raw)

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

    # -- images -----------------------------------------------------------------------------

    def image(self, ref: str) -> dict[str, Any] | None:
        """{id, repo_digests, labels, size, tags, config} of a local image, or None when
        absent; config: its cmd, entrypoint, workdir and user."""
        info = self._call(f"inspect image {ref}", lambda: self.api.inspect_image(ref),
                          absent="fine")
        if info is None:
            return None
        config = info.get("Config") or {}
        return {"id": info["Id"], "repo_digests": info.get("RepoDigests") or [],
                "labels": config.get("Labels") or {},
                "size": info.get("Size"), "tags": info.get("RepoTags") or [],
                "config": {"cmd": config.get("Cmd"), "entrypoint": config.get("Entrypoint"),
                           "workdir": config.get("WorkingDir") or "",
                           "user": config.get("User") or ""}}

    def pull(self, ref: str) -> str:
        """Pull by tag or digest; credentials come from the Docker config (helpers too)."""
        name, _, digest = ref.partition("@")
        repo = repository_of(name)
        tag = digest or name[len(repo) + 1:] or "latest"
        what = f"pull {ref}"
        stream = self._call(what, lambda: self.api.pull(repo, tag=tag, stream=True,
                                                        decode=True), absent="image")
        for _ in self._progress(what, stream):
            pass
        info = self.image(ref)
        if info is None:
            raise ImageError(f"{what}: pulled, but the engine does not list it")
        return str(info["id"])

    def push(self, image_id: str, repository: str, tag: str,
             on_line: Callable[[str], None]) -> str:
        """Tag ``image_id`` as REPOSITORY:TAG, push it, return the registry's manifest digest."""
        self.tag(image_id, repository, tag)
        what = f"push {repository}:{tag}"
        stream = self._call(what, lambda: self.api.push(repository, tag=tag, stream=True,
                                                        decode=True), absent="image")
        digest = None
        for chunk in self._progress(what, stream):
            if (chunk.get("aux") or {}).get("Digest"):
                digest = chunk["aux"]["Digest"]
            elif chunk.get("status") and not chunk.get("progressDetail"):
                on_line(f"{chunk.get('id', '')} {chunk['status']}".strip())
        if digest is None:
            raise ImageError(f"{what}: the registry reported no digest")
        return str(digest)

    def save(self, image_id: str) -> Iterator[bytes]:
        """``docker save`` of one image, streamed (the archive keeps the image id)."""
        what = f"save image {shown(image_id)}"
        stream = self._call(what, lambda: self.api.get_image(image_id, chunk_size=1 << 20),
                            absent="image")
        yield from self._stream(what, stream)

    def load(self, archive: Iterable[bytes]) -> list[str]:
        """``docker load`` of a tar stream; returns the image ids the engine reports."""
        what = "load image archive"
        stream = self._call(what, lambda: self.api.load_image(iter(archive)))
        loaded: list[str] = []
        for chunk in self._progress(what, stream or []):
            text = str(chunk.get("stream", ""))
            for key in ("Loaded image ID: ", "Loaded image: "):
                if key in text:
                    loaded.append(text.split(key, 1)[1].strip())
        return loaded

    def tag(self, image_id: str, repo: str, tag: str) -> None:
        self._call(f"tag image {image_id}", lambda: self.api.tag(image_id, repo, tag))

    def remove_image(self, ref: str) -> None:
        self._call(f"remove image {ref}", lambda: self.api.remove_image(ref, force=True),
                   absent="fine")

    def build(self, context: Path, tag: str, buildargs: dict[str, str],
              labels: dict[str, str], on_line: Callable[[str], None],
              dockerfile: Path | None = None) -> str:
        """``docker build`` of a context folder (``dockerfile``: default its ``Dockerfile``);
        returns the image id. A failing step is the recipe's fault (BuildFailed, a usage
        error), not the engine's; it names the step and the build's last lines."""
        what = f"build {context}"
        from docker.errors import APIError

        data, name = context_tar(context, dockerfile)

        def chunks() -> Iterator[dict[str, Any]]:
            try:
                yield from self.api.build(
                    fileobj=io.BytesIO(data), custom_context=True, tag=tag, dockerfile=name,
                    buildargs=buildargs, labels=labels, rm=True, forcerm=True, decode=True,
                    use_config_proxy=False)
            except APIError as e:
                if e.status_code == 400:  # the Dockerfile does not parse
                    raise BuildFailed(_explain(e), None, []) from None
                raise

        image_id = None
        step: tuple[int, str] | None = None
        tail: list[str] = []
        pending = ""  # a step's output comes in pieces that need not end lines

        def lines(text: str) -> None:
            nonlocal step, tail
            for line in text.split("\n"):
                if not line.strip():
                    continue
                on_line(line.rstrip())
                started = STEP.match(line)
                if started:
                    step, tail = (int(started[1]), started[2].strip()), []
                elif not BUILDER_CHATTER.match(line):
                    tail = (tail + [line.rstrip()])[-BUILD_TAIL:]

        for chunk in self._stream(what, chunks()):
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                lines(pending)
                raise BuildFailed(str(chunk["error"]).strip(), step, tail)
            pending += ANSI.sub("", str(chunk.get("stream", "")))
            whole, _, pending = pending.rpartition("\n")
            lines(whole)
            if "ID" in (chunk.get("aux") or {}):
                image_id = chunk["aux"]["ID"]
        lines(pending)
        info = self.image(tag)
        if info is None:
            raise ImageError(f"{what}: finished without an image")
        return str(image_id or info["id"])

    def commit(self, job_id: str, changes: list[str]) -> str:
        """The container's file system as a new image (``changes``: Dockerfile instructions
        such as ``LABEL`` and ``CMD``); returns its id."""
        out = self._call(f"commit {job_id[:12]}",
                         lambda: self.api.commit(job_id, changes=changes))
        return str(out["Id"])

    def import_rootfs(self, tar_path: Path, repository: str, tag: str,
                      changes: list[str]) -> str:
        what = f"import {tar_path}"
        out = self._call(what, lambda: self.api.import_image_from_file(
            str(tar_path), repository=repository, tag=tag, changes=changes))
        info = self.image(f"{repository}:{tag}")
        if info is None:  # podman's compat API imports untagged and names the id it made
            made = re.search(r"sha256:[0-9a-f]{64}", str(out))
            if made is not None and self.image(made.group(0)) is not None:
                self.tag(made.group(0), repository, tag)
                info = self.image(f"{repository}:{tag}")
        if info is None:
            raise ImageError(f"{what}: no image came out ({str(out)[:200]})")
        return str(info["id"])


def dechunk(raw: Iterable[bytes]) -> Iterator[bytes]:
    """HTTP/1.1 chunked transfer coding undone, whatever the reads cut: the data of every
    whole chunk in each read, joined."""
    buf = b""
    for piece in raw:
        buf += piece
        out: list[bytes] = []
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                break
            size = int(buf[:eol].split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                if out:
                    yield b"".join(out)
                return
            end = eol + 2 + size
            if len(buf) < end + 2:
                break
            out.append(buf[eol + 2:end])
            buf = buf[end + 2:]
        if out:
            yield b"".join(out)


def demux(stream: Iterable[bytes]) -> Iterator[bytes]:
    """The payloads of the engine's multiplexed log frames (8-byte header: stream, 3 zero
    bytes, big-endian length), stdout and stderr merged in order; every whole frame in each
    piece, joined."""
    buf = b""
    for piece in stream:
        buf += piece
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 8:
            length = int.from_bytes(buf[pos + 4:pos + 8], "big")
            if len(buf) - pos - 8 < length:
                break
            out.append(buf[pos + 8:pos + 8 + length])
            pos += 8 + length
        buf = buf[pos:]
        if out:
            yield b"".join(out)


def gpu_options(uuids: list[str], podman: bool) -> dict[str, Any]:
    """Host-config options that give a container exactly these GPUs: Docker's nvidia
    device requests by UUID, or CDI device names under podman."""
    if not uuids:
        return {}
    if podman:
        return {"devices": [f"nvidia.com/gpu={u}" for u in uuids]}
    return {"device_requests": [{"driver": "", "count": 0, "device_ids": list(uuids),
                                 "capabilities": [["gpu"]]}]}


def _check_sees_files(where: str) -> None:
    """Refuse an engine that cannot bind-mount this machine's files (see the docstring)."""
    url = urlparse(where if "://" in where else f"unix://{where}")
    if url.scheme in ("unix", "http+unix", "npipe", "http+docker"):
        return
    host = (url.hostname or "").lower()
    if url.scheme in ("tcp", "http", "https") and host in LOOPBACK:
        return
    if os.environ.get("REPRO_ENGINE_SHARES_FILES") == "1":
        return
    raise EngineUnavailable(f"the engine at {where} runs on another machine, which cannot see "
                            "the code, inputs and outputs repro bind-mounts from here; use "
                            "a local engine (or its socket forwarded here), or set "
                            "REPRO_ENGINE_SHARES_FILES=1 if that engine shares this "
                            "machine's filesystem")


def parse_cpuset(text: str) -> set[int]:
    """{0, 2, 3} from "0,2-3"; nothing from what does not parse."""
    cores: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            cores.update(range(int(low), int(high or low) + 1))
    return cores


@contextmanager
def _cpuset_lock() -> Iterator[None]:
    """Held while cores are chosen and the container created (all repro processes here)."""
    import fcntl
    import tempfile

    path = Path(tempfile.gettempdir()) / "repro-cpuset.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def context_tar(context: Path, dockerfile: Path | None = None) -> tuple[bytes, str]:
    """The build context as a tar, less what ``.dockerignore`` names, and the name of the
    Dockerfile in it (one from outside the context is added as ``.repro.Dockerfile``)."""
    buf = io.BytesIO()
    name = "Dockerfile"
    with tarfile.open(fileobj=buf, mode="w") as tar:
        files = context_files(context)
        for rel in files:
            tar.add(context / rel, arcname=rel, recursive=False)
        if dockerfile is not None:
            try:
                name = dockerfile.resolve().relative_to(context.resolve()).as_posix()
            except ValueError:
                name = OUTSIDE_DOCKERFILE
            if name not in files:
                name = OUTSIDE_DOCKERFILE
                tar.add(dockerfile, arcname=name, recursive=False)
    return buf.getvalue(), name


def _explain(e: Exception) -> str:
    text = str(getattr(e, "explanation", None) or e)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(e).__name__
