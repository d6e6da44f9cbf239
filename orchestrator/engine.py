"""The container engine seam: the only module that imports docker.

Small on purpose: the runner needs create/start/wait/logs/stop/remove, images by id or label,
build and import. ``docker.errors.*`` and ``requests`` errors are translated here into
``ReproError`` subclasses and never leave this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import EngineUnavailable, ImageError

LABEL_RUN = "org.repro.run"
LABEL_STORE = "org.repro.store"
LABEL_RECIPE = "org.repro.recipe"
LABEL_SWEEP = "org.repro.sweep"


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool = True


@dataclass
class ContainerConfig:
    image: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    user: str = "65534:65534"
    workdir: str = "/repro/outputs"
    nano_cpus: int = 1_000_000_000
    memory_bytes: int = 2 << 30
    network: str = "none"
    labels: dict[str, str] = field(default_factory=dict)
    gpu_ids: list[str] = field(default_factory=list)


@dataclass
class ExitStatus:
    code: int
    oom_killed: bool = False


class WaitTimeout(Exception):
    """The container did not exit within the wait deadline (engine-internal signal)."""


def _socket_hint() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return (f"cannot reach the Docker engine at {host}; start it with `scripts/ensure-docker` "
            "(or `systemctl start docker`) and check you may use its socket")


class Engine:
    def __init__(self) -> None:
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker  # lazy: ~100 ms of imports the CLI's --help should not pay
            try:  # no ping: the first real call reports an unreachable engine just as well
                self._client = docker.from_env(timeout=120)
            except Exception as e:  # docker raises DockerException, requests errors, OSError
                self._client = None
                raise EngineUnavailable(_socket_hint()) from e
        return self._client

    @property
    def api(self) -> Any:
        return self.client.api

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from docker import errors as derr
        from requests import exceptions as rexc

        try:
            return fn(*args, **kwargs)
        except derr.ImageNotFound as e:
            raise ImageError(f"{what}: image not found ({_explain(e)})") from e
        except derr.APIError as e:
            raise EngineUnavailable(f"{what}: Docker refused: {_explain(e)}") from e
        except (rexc.RequestException, derr.DockerException, OSError) as e:
            raise EngineUnavailable(f"{what}: {_socket_hint()}") from e

    # -- facts ------------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        v = self._call("docker version", self.api.version)
        return {"version": v.get("Version"), "api": v.get("ApiVersion"),
                "os": v.get("Os"), "arch": v.get("Arch"),
                "kernel": v.get("KernelVersion")}

    # -- images -----------------------------------------------------------------------------

    def image(self, ref: str) -> dict[str, Any] | None:
        """{id, repo_digests, labels, size} of a local image, or None when absent."""
        from docker import errors as derr

        try:
            info = self.api.inspect_image(ref)
        except derr.ImageNotFound:
            return None
        except derr.APIError as e:
            if e.status_code == 404:
                return None
            raise EngineUnavailable(f"inspect image {ref}: {_explain(e)}") from e
        except Exception as e:
            raise EngineUnavailable(f"inspect image {ref}: {_socket_hint()}") from e
        return {"id": info["Id"], "repo_digests": info.get("RepoDigests") or [],
                "labels": (info.get("Config") or {}).get("Labels") or {},
                "size": info.get("Size"), "tags": info.get("RepoTags") or []}

    def pull(self, ref: str) -> str:
        name, _, digest = ref.partition("@")
        repo = repository_of(name)
        tag = digest or name[len(repo) + 1:] or "latest"
        self._call(f"pull {ref}", self.api.pull, repo, tag=tag)
        info = self.image(ref)
        if info is None:
            raise ImageError(f"pull {ref}: pulled, but the engine does not list it")
        return info["id"]

    def save(self, image_id: str) -> Iterator[bytes]:
        """``docker save`` of one image, streamed (the archive keeps the image id)."""
        stream = self._call(f"save image {image_id[:19]}", self.api.get_image, image_id,
                            chunk_size=1 << 20)
        yield from self._iter(f"save image {image_id[:19]}", stream)

    def load(self, archive: BinaryIO) -> list[str]:
        """``docker load``; returns the image ids the engine reports loading."""
        stream = self._call("load image archive", self.api.load_image, archive)
        loaded: list[str] = []
        for chunk in self._iter("load image archive", stream or []):
            if "error" in chunk:
                raise ImageError(f"load image archive: {chunk['error'].strip()}")
            text = chunk.get("stream", "")
            for key in ("Loaded image ID: ", "Loaded image: "):
                if key in text:
                    loaded.append(text.split(key, 1)[1].strip())
        return loaded

    def push(self, image_id: str, repository: str, tag: str,
             on_line: Callable[[str], None]) -> str:
        """Tag ``image_id`` as REPOSITORY:TAG, push it, return the registry's manifest digest."""
        self.tag(image_id, repository, tag)
        stream = self._call(f"push {repository}:{tag}", self.api.push, repository, tag=tag,
                            stream=True, decode=True)
        digest = None
        for chunk in self._iter(f"push {repository}:{tag}", stream):
            if "error" in chunk:
                raise ImageError(f"push {repository}:{tag}: {chunk['error'].strip()}")
            if chunk.get("aux", {}).get("Digest"):
                digest = chunk["aux"]["Digest"]
            elif chunk.get("status") and not chunk.get("progressDetail"):
                on_line(f"{chunk.get('id', '')} {chunk['status']}".strip())
        if digest is None:
            raise ImageError(f"push {repository}:{tag}: the registry reported no digest")
        return digest

    def remove_image(self, ref: str) -> None:
        self._unless_gone(f"remove image {ref}", self.api.remove_image, ref, force=True)

    def tag(self, image_id: str, repo: str, tag: str) -> None:
        self._call(f"tag {image_id}", self.api.tag, image_id, repo, tag)

    def build(self, context: Path, tag: str, buildargs: dict[str, str],
              labels: dict[str, str], on_line: Callable[[str], None]) -> str:
        """``docker build`` of a folder; returns the image id."""
        stream = self._call(f"build {context}", self.api.build, path=str(context), tag=tag,
                            buildargs=buildargs, labels=labels, rm=True, forcerm=True,
                            decode=True, pull=False)
        image_id = None
        for chunk in self._iter(f"build {context}", stream):
            if "error" in chunk:
                raise ImageError(f"build {context}: {chunk['error'].strip()}")
            if "stream" in chunk and chunk["stream"].strip():
                on_line(chunk["stream"].rstrip())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        info = self.image(tag)
        if info is None:
            raise ImageError(f"build {context}: finished without an image")
        return image_id or info["id"]

    def import_rootfs(self, tar_path: Path, repository: str, tag: str,
                      changes: list[str]) -> str:
        out = self._call(f"import {tar_path}", self.api.import_image_from_file,
                         str(tar_path), repository=repository, tag=tag, changes=changes)
        info = self.image(f"{repository}:{tag}")
        if info is None:
            raise ImageError(f"import {tar_path}: no image came out ({str(out)[:200]})")
        return info["id"]

    def _iter(self, what: str, stream: Any) -> Iterator[Any]:
        from requests import exceptions as rexc

        try:
            yield from stream
        except (rexc.RequestException, OSError) as e:
            raise EngineUnavailable(f"{what}: lost the Docker engine at "
                                    f"{os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')}"
                                    f" ({type(e).__name__})") from e

    # -- containers ---------------------------------------------------------------------------

    def create(self, cfg: ContainerConfig) -> str:
        from docker.types import DeviceRequest
        from docker.types import Mount as DMount

        host = self.api.create_host_config(
            mounts=[DMount(m.target, m.source, type="bind", read_only=m.read_only)
                    for m in cfg.mounts],
            nano_cpus=cfg.nano_cpus, mem_limit=cfg.memory_bytes,
            memswap_limit=cfg.memory_bytes, network_mode=cfg.network,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=4096,
            device_requests=[DeviceRequest(device_ids=cfg.gpu_ids, capabilities=[["gpu"]])]
            if cfg.gpu_ids else None,
        )
        c = self._call("create container", self.api.create_container, cfg.image,
                       command=cfg.command, environment=cfg.env, user=cfg.user,
                       working_dir=cfg.workdir, labels=cfg.labels, host_config=host,
                       network_disabled=cfg.network == "none")
        return c["Id"]

    def start(self, cid: str) -> None:
        self._call("start container", self.api.start, cid)

    def logs(self, cid: str) -> Iterator[bytes]:
        """Follow the merged stdout/stderr stream from the beginning until the exit."""
        stream = self._call("follow logs", self.api.logs, cid, stream=True, follow=True)
        yield from self._iter("follow logs", stream)

    def stderr_tail(self, cid: str, lines: int = 40) -> str:
        data = self._call("read logs", self.api.logs, cid, stdout=False, stderr=True,
                          tail=lines)
        return data.decode("utf-8", "replace")

    def wait(self, cid: str, timeout: float | None) -> ExitStatus:
        from requests import exceptions as rexc

        try:
            res = self.api.wait(cid, timeout=timeout)
        except rexc.RequestException as e:
            if timeout is not None and "timed out" in str(e).lower():
                raise WaitTimeout from e
            raise EngineUnavailable(f"lost the engine while the job ran: {_socket_hint()}") from e
        state = self._call("inspect container", self.api.inspect_container, cid)["State"]
        return ExitStatus(code=int(res.get("StatusCode", state.get("ExitCode", -1))),
                          oom_killed=bool(state.get("OOMKilled")))

    def stop(self, cid: str, grace: float = 10) -> None:
        self._unless_gone(f"stop container {cid[:12]}", self.api.stop, cid, timeout=int(grace))

    def remove(self, cid: str) -> None:
        self._unless_gone(f"remove container {cid[:12]}", self.api.remove_container, cid,
                          force=True)

    def _unless_gone(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call ``fn``; a 404 (already gone) is fine, anything else is reported."""
        from docker import errors as derr

        try:
            fn(*args, **kwargs)
        except derr.NotFound:
            pass
        except Exception as e:
            raise EngineUnavailable(f"{what}: {_explain(e)}") from e

    def containers_with_label(self, key: str, value: str | None = None) -> list[dict[str, Any]]:
        flt = {"label": f"{key}={value}" if value is not None else key}
        found = self._call("list containers", self.api.containers, all=True, filters=flt)
        return [{"id": c["Id"], "labels": c.get("Labels") or {}, "state": c.get("State")}
                for c in found]


def repository_of(ref: str) -> str:
    """'host:5000/name:tag' or 'name@sha256:...' -> the repository (a port is not a tag)."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _explain(e: Exception) -> str:
    text = getattr(e, "explanation", None) or str(e)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = text.strip().splitlines()
    return lines[0] if lines else type(e).__name__
