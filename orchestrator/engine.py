"""The container engine seam: the only module that talks to Docker.

Small on purpose: the runner needs create/start/wait/logs/stop/remove, images by id or label,
build and import. It speaks the Engine API through ``dockerhttp`` (standard library only);
its errors are translated here into ``ReproError`` subclasses and never leave this module.
"""

from __future__ import annotations

import fnmatch
import io
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dockerhttp as dh
from .errors import EngineUnavailable, ImageError
from .hashing import chunks_of, shown

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
    tmp_bytes: int | None = None  # size of the tmpfs at /tmp and /var/tmp (None: the disk)


@dataclass
class ExitStatus:
    code: int
    oom_killed: bool = False


class WaitTimeout(Exception):
    """The container did not exit within the wait deadline (engine-internal signal)."""


def _socket_hint() -> str:
    return (f"cannot reach the Docker engine at {dh.host()}; start it with "
            "`scripts/ensure-docker` (or `systemctl start docker`) and check you may use its "
            "socket")


class Engine:
    def __init__(self) -> None:
        self._client: dh.Client | None = None

    @property
    def client(self) -> dh.Client:
        if self._client is None:
            try:  # no ping: the first real call reports an unreachable engine just as well
                self._client = dh.Client(timeout=120)
            except dh.TransportError as e:  # a DOCKER_HOST we cannot speak to
                raise EngineUnavailable(str(e)) from e
        return self._client

    def _call(self, what: str, fn: Callable[..., Any], *args: Any,
              absent: str = "refused", **kwargs: Any) -> Any:
        """``fn``, its errors as ReproErrors. ``absent`` says what a 404 means: "refused"
        (an error like any other), "image" (the image is missing: ImageError) or "fine"
        (already gone, or not there to find: None)."""
        try:
            return fn(*args, **kwargs)
        except dh.APIError as e:
            if e.status == 404 and absent == "fine":
                return None
            if e.status == 404 and absent == "image":
                raise ImageError(f"{what}: image not found ({_explain(e)})") from e
            raise EngineUnavailable(f"{what}: Docker refused: {_explain(e)}") from e
        except (dh.TransportError, OSError) as e:
            raise EngineUnavailable(f"{what}: {_socket_hint()}") from e

    def _json(self, what: str, method: str, url: str, **kwargs: Any) -> Any:
        return self._call(what, self.client.json, method, url, **kwargs)

    def _stream(self, what: str, method: str, url: str, **kwargs: Any) -> Any:
        """The open response of a streaming call (read it with ``_iter``)."""
        return self._call(what, self.client.request, method, url, **kwargs)

    def _send(self, what: str, method: str, url: str, **kwargs: Any) -> None:
        """A request whose answer carries nothing we need."""
        self._call(what, self.client.call, method, url, **kwargs)

    # -- facts ------------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        v = self._json("docker version", "GET", "/version")
        return {"version": v.get("Version"), "api": v.get("ApiVersion"),
                "os": v.get("Os"), "arch": v.get("Arch"),
                "kernel": v.get("KernelVersion")}

    # -- images -----------------------------------------------------------------------------

    def image(self, ref: str) -> dict[str, Any] | None:
        """{id, repo_digests, labels, size} of a local image, or None when absent."""
        info = self._json(f"inspect image {ref}", "GET", dh.path("/images/{}/json", ref),
                          absent="fine")
        if info is None:
            return None
        return {"id": info["Id"], "repo_digests": info.get("RepoDigests") or [],
                "labels": (info.get("Config") or {}).get("Labels") or {},
                "size": info.get("Size"), "tags": info.get("RepoTags") or []}

    def pull(self, ref: str) -> str:
        name, _, digest = ref.partition("@")
        repo = repository_of(name)
        tag = digest or name[len(repo) + 1:] or "latest"
        what = f"pull {ref}"
        resp = self._stream(what, "POST", "/images/create", absent="image",
                            params={"fromImage": repo, "tag": tag},
                            headers={"X-Registry-Auth": dh.registry_auth()}, timeout=None)
        for chunk in self._iter(what, dh.json_stream(resp)):
            if "error" in chunk:
                raise ImageError(f"{what}: {chunk['error'].strip()}")
        info = self.image(ref)
        if info is None:
            raise ImageError(f"{what}: pulled, but the engine does not list it")
        return info["id"]

    def save(self, image_id: str) -> Iterator[bytes]:
        """``docker save`` of one image, streamed (the archive keeps the image id)."""
        what = f"save image {shown(image_id)}"
        resp = self._stream(what, "GET", dh.path("/images/{}/get", image_id), timeout=None,
                            absent="image")
        yield from self._iter(what, dh.chunks(resp))

    def load(self, archive: Iterable[bytes]) -> list[str]:
        """``docker load`` of a tar stream; returns the image ids the engine reports."""
        what = "load image archive"
        resp = self._stream(what, "POST", "/images/load", body=iter(archive),
                            headers={"Content-Type": "application/x-tar"}, timeout=None)
        loaded: list[str] = []
        for chunk in self._iter(what, dh.json_stream(resp)):
            if "error" in chunk:
                raise ImageError(f"{what}: {chunk['error'].strip()}")
            text = chunk.get("stream", "")
            for key in ("Loaded image ID: ", "Loaded image: "):
                if key in text:
                    loaded.append(text.split(key, 1)[1].strip())
        return loaded

    def push(self, image_id: str, repository: str, tag: str,
             on_line: Callable[[str], None]) -> str:
        """Tag ``image_id`` as REPOSITORY:TAG, push it, return the registry's manifest digest."""
        self.tag(image_id, repository, tag)
        what = f"push {repository}:{tag}"
        resp = self._stream(what, "POST", dh.path("/images/{}/push", repository),
                            absent="image", params={"tag": tag},
                            headers={"X-Registry-Auth": dh.registry_auth()}, timeout=None)
        digest = None
        for chunk in self._iter(what, dh.json_stream(resp)):
            if "error" in chunk:
                raise ImageError(f"{what}: {chunk['error'].strip()}")
            if chunk.get("aux", {}).get("Digest"):
                digest = chunk["aux"]["Digest"]
            elif chunk.get("status") and not chunk.get("progressDetail"):
                on_line(f"{chunk.get('id', '')} {chunk['status']}".strip())
        if digest is None:
            raise ImageError(f"{what}: the registry reported no digest")
        return digest

    def remove_image(self, ref: str) -> None:
        self._send(f"remove image {ref}", "DELETE", dh.path("/images/{}", ref),
                   params={"force": True}, absent="fine")

    def tag(self, image_id: str, repo: str, tag: str) -> None:
        self._send(f"tag image {image_id}", "POST",
                   dh.path("/images/{}/tag", image_id), params={"repo": repo, "tag": tag})

    def build(self, context: Path, tag: str, buildargs: dict[str, str],
              labels: dict[str, str], on_line: Callable[[str], None]) -> str:
        """``docker build`` of a folder; returns the image id."""
        what = f"build {context}"
        resp = self._stream(what, "POST", "/build", body=_context_tar(context),
                            headers={"Content-Type": "application/x-tar"},
                            params={"t": tag, "buildargs": buildargs, "labels": labels,
                                    "rm": True, "forcerm": True}, timeout=None)
        image_id = None
        for chunk in self._iter(what, dh.json_stream(resp)):
            if "error" in chunk:
                raise ImageError(f"{what}: {chunk['error'].strip()}")
            if "stream" in chunk and chunk["stream"].strip():
                on_line(chunk["stream"].rstrip())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        info = self.image(tag)
        if info is None:
            raise ImageError(f"{what}: finished without an image")
        return image_id or info["id"]

    def import_rootfs(self, tar_path: Path, repository: str, tag: str,
                      changes: list[str]) -> str:
        what = f"import {tar_path}"
        try:
            f = open(tar_path, "rb")
        except OSError as e:
            raise ImageError(f"{what}: {e.strerror}") from e
        with f:
            out = self._json(what, "POST", "/images/create", body=chunks_of(f),
                             params={"fromSrc": "-", "repo": repository, "tag": tag,
                                     "changes": changes},
                             headers={"Content-Type": "application/x-tar",
                                      "Content-Length": str(os.fstat(f.fileno()).st_size)},
                             timeout=None)
        info = self.image(f"{repository}:{tag}")
        if info is None:
            raise ImageError(f"{what}: no image came out ({str(out)[:200]})")
        return info["id"]

    def _iter(self, what: str, stream: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from stream
        except (dh.TransportError, OSError) as e:
            raise EngineUnavailable(f"{what}: lost the Docker engine at {dh.host()} "
                                    f"({e})") from e

    # -- containers ---------------------------------------------------------------------------

    def create(self, cfg: ContainerConfig) -> str:
        host: dict[str, Any] = {
            "Mounts": [{"Type": "bind", "Source": m.source, "Target": m.target,
                        "ReadOnly": m.read_only} for m in cfg.mounts],
            "NanoCpus": cfg.nano_cpus, "Memory": cfg.memory_bytes,
            "MemorySwap": cfg.memory_bytes, "NetworkMode": cfg.network,
            "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"], "PidsLimit": 4096,
        }
        if cfg.tmp_bytes:  # a job's scratch space counts against its memory, not the disk
            opts = f"rw,nosuid,nodev,size={cfg.tmp_bytes},mode=1777"
            host["Tmpfs"] = {"/tmp": opts, "/var/tmp": opts}
        if cfg.gpu_ids:
            host["DeviceRequests"] = [{"Driver": "", "Count": 0, "DeviceIDs": cfg.gpu_ids,
                                       "Capabilities": [["gpu"]], "Options": {}}]
        config = {"Image": cfg.image, "Cmd": cfg.command,
                  "Env": [f"{k}={v}" for k, v in cfg.env.items()], "User": cfg.user,
                  "WorkingDir": cfg.workdir, "Labels": cfg.labels, "HostConfig": host,
                  "NetworkDisabled": cfg.network == "none", "Tty": False, "OpenStdin": False,
                  "AttachStdout": True, "AttachStderr": True}
        return self._json("create container", "POST", "/containers/create", body=config,
                          absent="image")["Id"]  # the only thing create can miss

    def start(self, cid: str) -> None:
        self._send("start container", "POST",
                   dh.path("/containers/{}/start", cid))

    def logs(self, cid: str) -> Iterator[bytes]:
        """Follow the merged stdout/stderr stream from the beginning until the exit."""
        resp = self._stream("follow logs", "GET", dh.path("/containers/{}/logs", cid),
                            params={"stdout": True, "stderr": True, "follow": True},
                            timeout=None)
        yield from self._iter("follow logs", dh.frames(dh.chunks(resp, 65536)))

    def stderr_tail(self, cid: str, lines: int = 40) -> str:
        resp = self._stream("read logs", "GET", dh.path("/containers/{}/logs", cid),
                            params={"stdout": False, "stderr": True, "tail": lines})
        data = b"".join(self._iter("read logs", dh.frames(dh.chunks(resp))))
        return data.decode("utf-8", "replace")

    def wait(self, cid: str, timeout: float | None) -> ExitStatus:
        try:
            res = self.client.json("POST", dh.path("/containers/{}/wait", cid), timeout=timeout)
        except TimeoutError as e:
            if timeout is not None:
                raise WaitTimeout from e
            raise EngineUnavailable(f"lost the engine while the job ran: {_socket_hint()}") from e
        except (dh.TransportError, dh.APIError, OSError) as e:
            raise EngineUnavailable(f"lost the engine while the job ran: {_socket_hint()}") from e
        state = self._json("inspect container", "GET",
                           dh.path("/containers/{}/json", cid))["State"]
        return ExitStatus(code=int((res or {}).get("StatusCode", state.get("ExitCode", -1))),
                          oom_killed=bool(state.get("OOMKilled")))

    def stop(self, cid: str, grace: float = 10) -> None:
        self._send(f"stop container {cid[:12]}", "POST", dh.path("/containers/{}/stop", cid),
                   params={"t": int(grace)}, timeout=120 + grace, absent="fine")

    def remove(self, cid: str) -> None:
        self._send(f"remove container {cid[:12]}", "DELETE", dh.path("/containers/{}", cid),
                   params={"force": True}, absent="fine")

    def containers_with_label(self, key: str, value: str | None = None) -> list[dict[str, Any]]:
        flt = {"label": [f"{key}={value}" if value is not None else key]}
        found = self._json("list containers", "GET", "/containers/json",
                           params={"all": True, "filters": flt})
        return [{"id": c["Id"], "labels": c.get("Labels") or {}, "state": c.get("State")}
                for c in found]


def _context_tar(context: Path) -> bytes:
    """The build context: the recipe folder as a tar, less what ``.dockerignore`` names
    (glob patterns on paths relative to the folder; ``!pattern`` takes a path back; the
    last matching line wins, as in Docker)."""
    rules: list[tuple[bool, str]] = []
    ignore = context / ".dockerignore"
    if ignore.is_file():
        for line in ignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keep = line.startswith("!")
                rules.append((keep, line.lstrip("!").strip("/")))

    def ignored(rel: str) -> bool:
        verdict = False
        for keep, pattern in rules:
            parts = rel.split("/")
            if any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern)
                   for i in range(1, len(parts) + 1)):
                verdict = not keep
        return verdict

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(context.rglob("*")):
            rel = path.relative_to(context).as_posix()
            if rel in ("Dockerfile", ".dockerignore") or not ignored(rel):
                tar.add(path, arcname=rel, recursive=False)
    return buf.getvalue()


def repository_of(ref: str) -> str:
    """'host:5000/name:tag' or 'name@sha256:...' -> the repository (a port is not a tag)."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _explain(e: Exception) -> str:
    text = getattr(e, "message", None) or str(e)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(e).__name__
