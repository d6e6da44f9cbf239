"""Images as unpacked folders, for runtimes with no image store of their own (Charliecloud).

An image comes only from repro's own archive of it (``image_archive.join_from_store``: the
engine's ``docker save`` format, each part hash-checked in the store), unpacked once per
image id into ``cache/images/HEX/root``: its config checked against the id (the id *is* the
config's sha256), each layer against its diff_id while it is read, whiteouts applied, and
nothing that could reach outside the folder (the tarfile ``tar`` filter; device nodes and
set-id bits never kept). A folder is complete once its ``image.json`` exists (written
last); an interrupted unpack leaves a ``.tmp-`` folder the next one removes.

The job's mount points are added where the image lacks them (``/repro``, ``/run/secrets``,
``/etc/machine-id``): a read-only image cannot gain them at run time, and Docker creates
the same ones in its container layer.

Why not `ch-image` or `ch-convert`: they are not in Debian's charliecloud-runtime, need the
image in a registry or a Docker engine, and do not check the layers against the recorded
image id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ImageError
from ..hashing import shown
from ..untrusted import HEX64
from . import locked
from .image_archive import ChunkReader

MOUNT_DIRS = ("repro", "run/secrets")
MOUNT_FILES = ("etc/machine-id",)
SMALL = 8 << 20  # the most a manifest, index or config of an archive may hold
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class Unpacked:
    """The image folders of one cache: by id, by tag, loaded from an archive stream."""

    def __init__(self, cache: Path | None = None) -> None:
        from .. import settings

        self.cache = cache or settings.image_cache()

    def _folder(self, image_id: str) -> Path:
        hex_ = image_id.removeprefix("sha256:")
        if not HEX64.fullmatch(hex_):
            raise ImageError(f"{image_id[:80]!r} is not an image id (sha256:64 hex digits)")
        return self.cache / "images" / hex_

    def root(self, image_id: str) -> Path:
        return self._folder(image_id) / "root"

    def image(self, ref: str) -> dict[str, Any] | None:
        """The image's facts (the shape ``DockerImages.image`` gives), or None when it is not
        unpacked here. ``ref``: an id, or a tag given to ``tag``."""
        image_id = ref if ref.startswith("sha256:") else self._tagged(ref)
        if image_id is None:
            return None
        try:
            doc = json.loads((self._folder(image_id) / "image.json").read_text())
        except (OSError, ValueError, ImageError):
            return None
        config = doc.get("config") or {}
        inner = config.get("config") or {}
        return {
            "id": image_id,
            "repo_digests": [],
            "labels": inner.get("Labels") or {},
            "size": doc.get("size"),
            "tags": doc.get("tags") or [],
            "layers": list((config.get("rootfs") or {}).get("diff_ids") or []),
            "env": list(inner.get("Env") or []),
            "config": {
                "cmd": inner.get("Cmd"),
                "entrypoint": inner.get("Entrypoint"),
                "workdir": inner.get("WorkingDir") or "",
                "user": inner.get("User") or "",
            },
        }

    def _tagged(self, ref: str) -> str | None:
        try:
            found = json.loads(self._tags_path().read_text()).get(ref)
        except (OSError, ValueError):
            return None
        return found if isinstance(found, str) else None

    def _tags_path(self) -> Path:
        return self.cache / "tags.json"

    def tag(self, image_id: str, repo: str, tag: str) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        with locked(self.cache / ".lock"):
            try:
                tags = json.loads(self._tags_path().read_text())
            except (OSError, ValueError):
                tags = {}
            tags[f"{repo}:{tag}"] = image_id
            _write_atomic(self._tags_path(), json.dumps(tags, sort_keys=True).encode())

    def remove_image(self, ref: str) -> None:
        image_id = ref if ref.startswith("sha256:") else self._tagged(ref)
        if image_id is not None:
            shutil.rmtree(self._folder(image_id), ignore_errors=True)

    def load(self, archive: Iterable[bytes]) -> list[str]:
        """Unpack the images of a ``docker save`` stream; their ids. Each id's config and
        layers are checked as they are read; an image already unpacked is kept as it is."""
        self.cache.mkdir(parents=True, exist_ok=True)
        (self.cache / "images").mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache, prefix=".spool-") as spool:
            blobs, small = _spool(archive, Path(spool))
            loaded = []
            for entry in _manifest(small):
                loaded.append(self._unpack(entry, blobs, small))
        return loaded

    def _unpack(
        self, entry: dict[str, Any], blobs: dict[str, tuple[Path, str]], small: dict[str, bytes]
    ) -> str:
        config_name = str(entry.get("Config") or "")
        data = small.get(config_name)
        if data is None and config_name in blobs:
            data = blobs[config_name][0].read_bytes()[:SMALL]
        if data is None:
            raise ImageError(f"the archive names config {config_name[:80]!r} but holds none")
        image_id = "sha256:" + hashlib.sha256(data).hexdigest()
        folder = self._folder(image_id)
        if (folder / "image.json").exists():
            return image_id
        try:
            config = json.loads(data)
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            raise ImageError(
                f"image {shown(image_id)}: its config is not an image config"
            ) from None
        layers = list(entry.get("Layers") or [])
        if len(layers) != len(diff_ids):
            raise ImageError(
                f"image {shown(image_id)}: {len(layers)} layers in the archive, "
                f"{len(diff_ids)} in its config"
            )
        with locked(self.cache / ".lock"):
            if (folder / "image.json").exists():  # another process unpacked it meanwhile
                return image_id
            for stale in (self.cache / "images").glob(f".tmp-{folder.name}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            work = Path(tempfile.mkdtemp(dir=self.cache / "images", prefix=f".tmp-{folder.name}-"))
            root = work / "root"
            root.mkdir()
            size = 0
            for name, diff_id in zip(layers, diff_ids, strict=True):
                if name not in blobs:
                    raise ImageError(
                        f"image {shown(image_id)}: layer {name[:80]!r} is missing from the archive"
                    )
                path, sha = blobs[name]
                if f"sha256:{sha}" != diff_id:
                    raise ImageError(
                        f"image {shown(image_id)}: layer {name[:80]} does not "
                        f"match its diff_id {shown(str(diff_id))} (corrupt or "
                        "altered archive)"
                    )
                size += apply_layer(path, root)
            _add_mount_points(root)
            doc = {"id": image_id, "config": config, "size": size}
            (work / "image.json").write_text(json.dumps(doc))
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(work, folder)
            os.chmod(folder, 0o755)
        return image_id


def _spool(
    archive: Iterable[bytes], spool: Path
) -> tuple[dict[str, tuple[Path, str]], dict[str, bytes]]:
    """Each regular member of the stream: the small JSON ones in memory, the rest on disk
    with their sha256 (hashed as written)."""
    blobs: dict[str, tuple[Path, str]] = {}
    small: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=ChunkReader(archive), mode="r|", bufsize=1 << 20) as tar:
            for n, m in enumerate(tar):
                if not m.isfile():
                    continue
                f = tar.extractfile(m)
                assert f is not None
                if (
                    m.name.endswith(("manifest.json", "index.json", "repositories"))
                    and m.size <= SMALL
                ):
                    small[m.name] = f.read()
                    continue
                path = spool / str(n)
                h = hashlib.sha256()
                with open(path, "wb") as out:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                blobs[m.name] = (path, h.hexdigest())
                if m.name.endswith(".json") and m.size <= SMALL:
                    small[m.name] = path.read_bytes()
    except tarfile.TarError as e:
        raise ImageError(f"the image archive is not a readable tar stream ({e})") from None
    return blobs, small


def _manifest(small: dict[str, bytes]) -> list[dict[str, Any]]:
    try:
        entries = json.loads(small["manifest.json"])
    except KeyError:
        raise ImageError(
            "the image archive holds no manifest.json (not a `docker save` archive)"
        ) from None
    except ValueError:
        raise ImageError("the image archive's manifest.json is not JSON") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageError("the image archive's manifest.json is not a list of images")
    return entries


def apply_layer(path: Path, root: Path) -> int:
    """Apply one layer (an uncompressed tar) onto ``root``: its whiteouts remove what lower
    layers left, then its members are extracted, replacing what they name. Nothing is
    written, removed or followed outside ``root``; device nodes, fifos and set-id bits are
    dropped. Returns the bytes of the regular files written."""
    top = os.path.realpath(root)
    size = 0
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            raise ImageError(
                "a compressed layer: repro unpacks what `docker save` writes (uncompressed layers)"
            )
        f.seek(0)
        try:
            tar = tarfile.open(fileobj=f, mode="r:")
            members = tar.getmembers()
        except tarfile.TarError as e:
            raise ImageError(f"a layer is not a readable tar ({e})") from None
        for m in members:  # first the whiteouts: they remove what lower layers left
            name = os.path.normpath(m.name.lstrip("/"))
            base, parent = os.path.basename(name), os.path.dirname(name)
            if name.startswith("..") or not base.startswith(WHITEOUT):
                continue
            if base == OPAQUE:
                folder = _inside(top, parent)
                if folder is not None and os.path.isdir(folder) and not os.path.islink(folder):
                    for child in os.listdir(folder):
                        _remove(os.path.join(folder, child))
            elif (target := _inside(top, os.path.join(parent, base[len(WHITEOUT) :]))):
                _remove(target)
        for m in members:
            name = os.path.normpath(m.name.lstrip("/"))
            base = os.path.basename(name)
            if name in (".", "") or name.startswith("..") or base.startswith(WHITEOUT):
                continue
            if m.ischr() or m.isblk() or m.isfifo():
                continue  # the runtime gives the job the host's /dev
            size += _extract(tar, m, name, top)
    return size


def _extract(tar: tarfile.TarFile, m: tarfile.TarInfo, name: str, top: str) -> int:
    """One member at ``top/name``, checked against what is on disk now (links an earlier
    member of the same layer made included), replacing what is there. Our own checks, not
    tarfile's filters: Python 3.11 before 3.11.4 (Debian 12's) has none."""
    target = _inside(top, name)
    if target is None:
        raise ImageError(f"a layer's member {m.name[:80]!r} reaches outside the image "
                         "through a link")
    if m.islnk():
        source = os.path.realpath(os.path.join(top, os.path.normpath(m.linkname.lstrip("/"))))
        if not source.startswith(top + os.sep) or not os.path.isfile(source):
            raise ImageError(f"a layer's hard link {m.name[:80]!r} names no file of the "
                             "image (outside the image, or not there)")
        m.linkname = os.path.relpath(source, top)
    if os.path.lexists(target) and not (m.isdir() and os.path.isdir(target)
                                        and not os.path.islink(target)):
        _remove(target)
    m.name = os.path.relpath(target, top)
    mode = (m.mode or 0) & ~0o7022  # no set-id or sticky bits, no group/other write
    m.mode = mode | 0o700 if m.isdir() else mode  # repro can always remove its folders
    kwargs: dict[str, Any] = {"numeric_owner": True}
    if hasattr(tarfile, "fully_trusted_filter"):  # checked above; say so (3.14's default)
        kwargs["filter"] = "fully_trusted"
    try:
        tar.extract(m, top, **kwargs)
    except (tarfile.TarError, OSError, KeyError) as e:
        raise ImageError(f"unpacking a layer: {m.name[:80]}: {e}") from None
    return m.size if m.isfile() else 0


def _inside(top: str, rel: str) -> str | None:
    """``top/rel`` with its parent's links resolved, when that stays inside ``top``."""
    parent = os.path.realpath(os.path.join(top, os.path.dirname(rel)))
    if parent != top and not parent.startswith(top + os.sep):
        return None
    return os.path.join(parent, os.path.basename(rel))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def _add_mount_points(root: Path) -> None:
    top = os.path.realpath(root)
    for rel in MOUNT_DIRS:
        target = _inside(top, rel)
        if target is not None and not os.path.lexists(target):
            os.makedirs(target, mode=0o755, exist_ok=True)
    for rel in MOUNT_FILES:
        target = _inside(top, rel)
        if (
            target is not None
            and not os.path.lexists(target)
            and os.path.isdir(os.path.dirname(target))
        ):
            Path(target).touch(mode=0o444)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
