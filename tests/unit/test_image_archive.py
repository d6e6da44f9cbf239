"""Image archives split into their members (shared layers stored once) and joined again."""

import hashlib
import io
import json
import tarfile

import pytest

from orchestrator.engine.image_archive import (
    ensure_present,
    join_from_store,
    member_digests,
    read_index,
    split_into_store,
)
from orchestrator.engine.image_save import Stopped, archive
from orchestrator.errors import CannotReplay
from orchestrator.fsck import check_artifact
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
    index, new = split_into_store(chunked(original), store.artifacts, "test image")
    assert index["size"] == len(b'[{"Config": "c.json"}]') + 666 + 140_002
    assert new == index["size"]
    joined = b"".join(join_from_store(index, store))
    assert members(joined) == members(original)


def test_a_layer_shared_by_two_images_is_stored_once(tmp_path):
    store = open_store(tmp_path / "h")
    base_layer = b"base layer bytes " * 10_000
    first, new_first = split_into_store(
        chunked(make_tar({"aaa/layer.tar": base_layer, "manifest.json": b"[1]"})),
        store.artifacts, "a")
    second, new_second = split_into_store(
        chunked(make_tar({"aaa/layer.tar": base_layer, "bbb/layer.tar": b"numpy",
                          "manifest.json": b"[2]"})), store.artifacts, "b")
    assert new_first == first["size"]
    assert new_second == len(b"numpy") + len(b"[2]")  # the base layer was already there
    layer = [next(m["sha256"] for m in idx["members"] if m["name"] == "aaa/layer.tar")
             for idx in (first, second)]
    assert layer[0] == layer[1] and store.artifacts.has(layer[0])  # one copy, both indexes


class Saving:
    """An engine that saves one image (its diff_ids from ``layers``) and counts saves."""

    def __init__(self, data: bytes, layers: list[str]) -> None:
        self.data, self.layers, self.saves = data, layers, 0

    def image(self, ref):
        return {"id": ref, "layers": self.layers}

    def save(self, image_id):
        self.saves += 1
        return chunked(self.data, 4096)


class Counting:
    """The artifact store, with the names of what was written through ``put``."""

    def __init__(self, artifacts) -> None:
        self.inner, self.written = artifacts, []

    def put(self, source, **kw):
        self.written.append(kw.get("name", ""))
        return self.inner.put(source, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_layer_already_in_the_store_is_hashed_not_written_again(tmp_path):
    store = open_store(tmp_path / "h")
    base, own = b"base layer " * 20_000, b"own layer " * 3_000
    base_id = "sha256:" + hashlib.sha256(base).hexdigest()
    own_id = "sha256:" + hashlib.sha256(own).hexdigest()
    store.artifacts.put(base)
    data = make_tar({"aaa/layer.tar": base, "bbb/layer.tar": own, "manifest.json": b"[]"})
    counting = Counting(store.artifacts)
    done = archive("sha256:" + "1" * 64, counting, Saving(data, [base_id, own_id]))
    assert not any("aaa/layer.tar" in n for n in counting.written)
    assert any("bbb/layer.tar" in n for n in counting.written)
    assert done.new == len(own) + 2 and done.size == len(base) + len(own) + 2
    # the index is the one a full split gives, and the archive joins back to the same tar
    full, _ = split_into_store(chunked(data), store.artifacts, "img")
    assert read_index(done.sha256, store) == full
    assert b"".join(join_from_store(full, store)) == data


def test_a_member_of_a_stored_layers_size_with_other_bytes_is_saved_again(tmp_path):
    store = open_store(tmp_path / "h")
    stored, other = b"a" * 50_000, b"b" * 50_000  # same size: taken for the stored layer
    store.artifacts.put(stored)
    data = make_tar({"aaa/layer.tar": other, "manifest.json": b"[]"})
    engine = Saving(data, ["sha256:" + hashlib.sha256(stored).hexdigest()])
    lines: list[str] = []
    done = archive("sha256:" + "1" * 64, store.artifacts, engine, lines.append)
    assert engine.saves == 2 and any("saving the image again" in line for line in lines)
    layer = next(m for m in read_index(done.sha256, store)["members"]
                 if m["name"] == "aaa/layer.tar")
    assert layer["sha256"] == hashlib.sha256(other).hexdigest()
    assert store.artifacts.check(layer["sha256"]) == "ok"


def test_an_archive_stops_when_asked_and_stores_no_index(tmp_path):
    import threading

    store = open_store(tmp_path / "h")
    data = make_tar({"aaa/layer.tar": b"x" * 100_000, "manifest.json": b"[]"})
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        archive("sha256:" + "1" * 64, store.artifacts, Saving(data, []), stop=stop)
    assert not store.artifacts.has(hashlib.sha256(b"x" * 100_000).hexdigest())


def test_an_archive_stored_whole_by_an_older_repro_is_recognised(tmp_path):
    store = open_store(tmp_path / "h")
    whole = store.artifacts.put(make_tar({"manifest.json": b"[]"})).sha256
    assert read_index(whole, store) is None  # loaded as the tar it is


class EngineWithout:
    """An engine that lacks every image (until ``gives`` is loaded) and records what it is
    asked to load, tag and remove."""

    def __init__(self, gives: str | None = None, also: tuple[str, ...] = ()) -> None:
        self.loaded: list[bytes] = []
        self.gives, self.also = gives, also
        self.held: set[str] = set()
        self.tags: list[tuple[str, str, str]] = []
        self.removed: list[str] = []

    def image(self, ref):
        return {"id": ref} if ref in self.held else None

    def load(self, chunks):
        self.loaded.append(b"".join(chunks))
        if self.gives:
            self.held.add(self.gives)
        return [*(self.gives and [self.gives] or []), *self.also]

    def tag(self, image_id, repo, tag):
        self.tags.append((image_id, repo, tag))

    def remove_image(self, ref):
        self.removed.append(ref)


CONFIG = b'{"architecture": "amd64", "config": {}}'
IMAGE_ID = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
OTHER = b'{"architecture": "amd64", "evil": true}'


def saved_image(extra: dict[str, bytes] | None = None) -> bytes:
    """What `docker save` writes for IMAGE_ID, plus a second (attacker's) image and tags."""
    manifest = [{"Config": "other.json", "RepoTags": ["repro/base:latest"],
                 "Layers": ["bbb/layer.tar"]},
                {"Config": "cfg.json", "RepoTags": ["repro/train:5994bbc17c92"],
                 "Layers": ["aaa/layer.tar"]}]
    return make_tar({"aaa/layer.tar": b"layer" * 999, "bbb/layer.tar": b"evil" * 99,
                     "cfg.json": CONFIG, "other.json": OTHER,
                     "manifest.json": json.dumps(manifest).encode(),
                     "repositories": b'{"repro/base": {"latest": "x"}}', **(extra or {})})


def stored_archive(store, data: bytes) -> str:
    index, _ = split_into_store(chunked(data), store.artifacts, "img")
    return store.artifacts.put(json.dumps(index).encode()).sha256


def test_a_corrupt_layer_is_named_before_anything_is_loaded(tmp_path):
    store = open_store(tmp_path / "h")
    index_sha = stored_archive(store, saved_image())
    image = ImageRef(digest=IMAGE_ID, archive=index_sha)
    engine = EngineWithout()
    with pytest.raises(CannotReplay, match="not in the engine, not archived"):
        ensure_present(image, store, engine, print)  # engine lacks it; so does the registry
    assert len(engine.loaded) == 1  # ... but the archive was loaded, intact
    sent = dict((m[0], m[5]) for m in members(engine.loaded[0]))
    assert sent["aaa/layer.tar"] == b"layer" * 999 and sent["cfg.json"] == CONFIG
    layer = dict(member_digests(index_sha, store))["aaa/layer.tar"]  # what fsck checks too
    path = store.artifacts.local_path(layer)
    path.chmod(0o644)
    path.write_bytes(b"flipped" * 10)
    assert check_artifact(store, layer) == "corrupt"
    with pytest.raises(CannotReplay, match=r"aaa/layer.tar \(.*\) is corrupt"):
        ensure_present(image, store, engine, print)
    assert len(engine.loaded) == 1  # nothing more was sent to the engine


def test_an_archive_never_tags_images_and_loads_only_the_recorded_one(tmp_path):
    """H3: a bundle's archive tagged its own image repro/<recipe>:<digest12>, which the next
    launch of that recipe then reused. Now the engine gets one manifest entry (the config
    that hashes to the recorded id), no RepoTags, no `repositories`; repro tags it."""
    store = open_store(tmp_path / "h")
    image = ImageRef(digest=IMAGE_ID, archive=stored_archive(store, saved_image()))
    engine = EngineWithout(gives=IMAGE_ID, also=("sha256:" + "6" * 64,))
    assert ensure_present(image, store, engine, print) == "archive"
    sent = {m[0]: m[5] for m in members(engine.loaded[0])}
    assert "repositories" not in sent
    assert json.loads(sent["manifest.json"]) == [
        {"Config": "cfg.json", "RepoTags": None, "Layers": ["aaa/layer.tar"]}]
    assert engine.tags == [(IMAGE_ID, "repro-loaded", IMAGE_ID[7:19])]
    assert engine.removed == ["sha256:" + "6" * 64]  # anything else it loaded goes


def test_an_archive_without_the_recorded_image_is_refused_before_loading(tmp_path):
    store = open_store(tmp_path / "h")
    wrong = ImageRef(digest="sha256:" + "7" * 64, archive=stored_archive(store, saved_image()))
    engine = EngineWithout()
    with pytest.raises(CannotReplay, match="does not hold that image"):
        ensure_present(wrong, store, engine, print)
    assert engine.loaded == []


def test_an_archive_the_engine_rejects_cannot_be_replayed(tmp_path):
    from orchestrator.errors import ImageError

    class Rejecting(EngineWithout):
        def load(self, chunks):
            b"".join(chunks)
            raise ImageError("load image archive: unexpected EOF")

    store = open_store(tmp_path / "h")
    image = ImageRef(digest=IMAGE_ID, archive=stored_archive(store, saved_image()))
    with pytest.raises(CannotReplay, match="engine rejected its archive") as e:
        ensure_present(image, store, Rejecting(), print)
    assert e.value.exit_code == 9


@pytest.mark.parametrize("mutate, problem", [
    (lambda ix: ix["members"][0].update(sha256="../../etc/passwd"), "members.0.sha256"),
    (lambda ix: ix["members"][0].update(type="3"), "members.0.type"),
    (lambda ix: ix["members"][0].update(name="a\x00b"), "members.0.name"),
    (lambda ix: ix.update(members=[{"name": "x", "type": "0", "mode": 1, "mtime": 0}]),
     "members.0"),
    # what the engine unpacks stays inside (issue 21, C1): names and link targets
    (lambda ix: ix["members"][0].update(name="../../etc/cron.d/x"), "members.0"),
    (lambda ix: ix["members"].append({"name": "l", "type": "2", "mode": 0o777, "mtime": 0,
                                      "linkname": "../../../etc"}),
     r"members.\d+ \(Value error, link"),
    (lambda ix: ix["members"].append({"name": "h", "type": "1", "mode": 0o644, "mtime": 0,
                                      "linkname": "/etc/shadow"}),
     r"members.\d+ \(Value error, hard link"),
])
def test_a_malformed_index_is_refused_by_name(tmp_path, mutate, problem):
    store = open_store(tmp_path / "h")
    index, _ = split_into_store(chunked(saved_image()), store.artifacts, "img")
    mutate(index)
    sha = store.artifacts.put(json.dumps(index).encode()).sha256
    with pytest.raises(CannotReplay, match=f"malformed archive index at {problem}"):
        read_index(sha, store)


def test_a_foreign_run_pulls_only_from_this_machines_own_registry(tmp_path):
    """Issue 21, H1: a record (or another member's push row) names where its image lives;
    for a run not launched here, repro pulls only from the registry of its own artifact
    store (by digest), never from one the record or a teammate's row names."""
    from orchestrator.engine.image_archive import _registry_refs

    store = open_store(tmp_path / "h")
    digest = "sha256:" + "d" * 64
    store.runs.add_push(IMAGE_ID, "evil.example/x", digest)
    store.runs.add_push(IMAGE_ID, "team.example:5000/runs", digest)
    image = ImageRef(digest=IMAGE_ID, ref="elsewhere.example/y@" + digest)
    refs = _registry_refs(image, store, None)  # the record's own ref, then pushes newest first
    assert refs[0] == f"elsewhere.example/y@{digest}"
    assert sorted(refs[1:]) == [f"evil.example/x@{digest}", f"team.example:5000/runs@{digest}"]
    assert _registry_refs(image, store, "team.example:5000") == [
        f"team.example:5000/runs@{digest}"]
    assert _registry_refs(image, store, "") == []  # artifacts in a folder: no registry


def test_a_run_from_elsewhere_runs_only_an_image_it_brings(tmp_path):
    """Issue 21, M8: a bundle (or a teammate's row) could name the id of an image the
    verifier's engine held, a private one say, and its job ran there. A run from elsewhere
    uses the engine's copy only when its store holds that image's archive (intact, with
    that config), or when the verifier grants it with --local-image."""
    from orchestrator.hashing import canonical_json

    store = open_store(tmp_path / "h")
    config = b'{"rootfs": "the verifier\'s private image"}'
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    engine = EngineWithout()
    engine.held.add(image_id)
    image = ImageRef(digest=image_id)
    lines: list[str] = []
    assert ensure_present(image, store, engine, lines.append) == "engine"  # a run of ours
    with pytest.raises(CannotReplay, match="does not bring it .* pass --local-image"):
        ensure_present(image, store, engine, lines.append, registries=False, foreign=True)
    assert ensure_present(image, store, engine, lines.append, registries=False, foreign=True,
                          local_image=True) == "engine"

    # an archive, but not of that image
    other, _ = split_into_store(chunked(make_tar({"manifest.json": b"[]", "x.json": b"{}"})),
                                store.artifacts, "another image")
    sha = store.artifacts.put(canonical_json(other).encode()).sha256
    brought = ImageRef(digest=image_id, archive=sha)
    with pytest.raises(CannotReplay, match="does not bring it"):
        ensure_present(brought, store, engine, lines.append, registries=False, foreign=True)
    own, _ = split_into_store(chunked(make_tar({"manifest.json": b"[]",
                                                f"{image_id[7:]}.json": config})),
                              store.artifacts, "it")
    sha = store.artifacts.put(canonical_json(own).encode()).sha256
    brought = ImageRef(digest=image_id, archive=sha)
    assert ensure_present(brought, store, engine, lines.append, registries=False,
                          foreign=True) == "engine"
    assert engine.loaded == []  # the engine's copy, proven the same by the archive's config
