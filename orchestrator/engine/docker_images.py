"""Images on a Docker (or podman) engine: inspect, pull, push, save, load, tag, build from
a recipe's context, commit and import. The connection and its error translation are
``DockerAPI``'s; a failing build step is the recipe's fault (``BuildFailed``)."""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ImageError
from ..hashing import shown
from . import BuildFailed, repository_of
from .docker_api import DockerAPI, _explain
from .recipe import context_files

STEP = re.compile(r"^\s*(?:Step|STEP) (\d+)/\d+\s*:\s*(.*)$")  # docker's and podman's
BUILD_TAIL = 8  # lines of a failed build step's output kept for the error
BUILDER_CHATTER = re.compile(r"^\s*(---> |Removing intermediate container )")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
OUTSIDE_DOCKERFILE = ".repro.Dockerfile"  # a recipe's Dockerfile, when outside its context


class DockerImages(DockerAPI):
    """The image backend half of the Docker engine."""

    def image(self, ref: str) -> dict[str, Any] | None:
        """{id, repo_digests, labels, size, tags, config, layers} of a local image, or None
        when absent; config: its cmd, entrypoint, workdir and user; layers: the diff_ids
        (sha256 of each layer's tar), bottom first."""
        info = self._call(f"inspect image {ref}", lambda: self.api.inspect_image(ref),
                          absent="fine")
        if info is None:
            return None
        config = info.get("Config") or {}
        return {"id": info["Id"], "repo_digests": info.get("RepoDigests") or [],
                "labels": config.get("Labels") or {},
                "size": info.get("Size"), "tags": info.get("RepoTags") or [],
                "layers": list((info.get("RootFS") or {}).get("Layers") or []),
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
