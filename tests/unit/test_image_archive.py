"""Image archives split into their members (shared layers stored once) and joined again."""

import io
import json
import tarfile

import pytest

from orchestrator.errors import CannotReplay
from orchestrator.image_archive import (
    ensure_present,
    join_from_store,
    member_digests,
    read_index,
    split_into_store,
)
from orchestrator.integrity import check_artifact
from orchestrator.record import ImageRef
from orchestrator.store import open_store

LONG = "d" * 120 + "/layer.tar"  # past ustar's 100-character name field


def make_tar(files: dict[str, bytes], extra_link: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = {name.rsplit("/", 1)[0] for name in files if "/" in name}
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        if extra_link:
            info = tarfile.TarInfo("latest")
            info.type, info.linkname = tarfile.SYMTYPE, LONG.split("/")[0]
            tar.addfile(info)
    return buf.getvalue()


def members(data: bytes) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, m.type, m.mode, m.mtime, m.linkname,
                 tar.extractfile(m).read() if m.isreg() else None) for m in tar]


def chunked(data: bytes, size: int = 1000):
    return (data[i:i + size] for i in range(0, len(data), size))


def test_split_then_join_gives_back_every_member(tmp_path):
    store = open_store(tmp_path / "h")
    original = make_tar({"manifest.json": b'[{"Config": "c.json"}]', "c.json": b"{}" * 333,
                         LONG: b"\x00\x01" * 70_001, "empty/VERSION": b""})
    index, new = split_into_store(chunked(original), store, "test image")
    assert index["size"] == len(b'[{"Config": "c.json"}]') + 666 + 140_002
    assert new == index["size"]
    joined = b"".join(join_from_store(index, store))
    assert members(joined) == members(original)


def test_a_layer_shared_by_two_images_is_stored_once(tmp_path):
    store = open_store(tmp_path / "h")
    base_layer = b"base layer bytes " * 10_000
    first, new_first = split_into_store(
        chunked(make_tar({"aaa/layer.tar": base_layer, "manifest.json": b"[1]"})), store, "a")
    second, new_second = split_into_store(
        chunked(make_tar({"aaa/layer.tar": base_layer, "bbb/layer.tar": b"numpy",
                          "manifest.json": b"[2]"})), store, "b")
    assert new_first == first["size"]
    assert new_second == len(b"numpy") + len(b"[2]")  # the base layer was already there
    shas = {m["name"]: m["sha256"] for idx in (first, second) for m in idx["members"]
            if "sha256" in m}
    assert len({shas["aaa/layer.tar"]}) == 1 and store.artifacts.has(shas["aaa/layer.tar"])


def test_an_archive_stored_whole_by_an_older_repro_is_recognised(tmp_path):
    store = open_store(tmp_path / "h")
    whole = store.artifacts.put_bytes(make_tar({"manifest.json": b"[]"}))
    assert read_index(whole, store) is None  # loaded as the tar it is


class EngineWithout:
    """An engine that lacks every image and records what it is asked to load."""

    def __init__(self) -> None:
        self.loaded: list[bytes] = []

    def image(self, ref):
        return None

    def load(self, chunks):
        self.loaded.append(b"".join(chunks))
        return []


def test_a_corrupt_layer_is_named_before_anything_is_loaded(tmp_path):
    store = open_store(tmp_path / "h")
    index, _ = split_into_store(chunked(make_tar({"aaa/layer.tar": b"layer" * 999,
                                                  "manifest.json": b"[]"})), store, "img")
    index_sha = store.artifacts.put_bytes(json.dumps(index).encode())
    image = ImageRef(digest="sha256:" + "7" * 64, archive=index_sha)
    engine = EngineWithout()
    with pytest.raises(CannotReplay, match="not in the engine, not archived"):
        ensure_present(image, store, engine, print)  # engine lacks it; so does the registry
    assert len(engine.loaded) == 1  # ... but the archive was loaded, intact
    assert members(engine.loaded[0]) == members(make_tar({"aaa/layer.tar": b"layer" * 999,
                                                          "manifest.json": b"[]"}))
    layer = dict(member_digests(index_sha, store))["aaa/layer.tar"]  # what fsck checks too
    path = store.artifacts.path(layer)
    path.chmod(0o644)
    path.write_bytes(b"flipped" * 10)
    assert check_artifact(store, layer) == "corrupt"
    with pytest.raises(CannotReplay, match=r"aaa/layer.tar \(.*\) is corrupt"):
        ensure_present(image, store, engine, print)
    assert len(engine.loaded) == 1  # nothing more was sent to the engine
