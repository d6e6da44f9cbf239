"""Unpacking an image archive for Charliecloud (engine/unpacked.py): a `docker save` stream
built here byte by byte, honest and hostile (an archive crosses a trust boundary: a bundle,
a teammate's store). Nothing may land outside the cache, and the id is checked."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from orchestrator.engine.unpacked import Unpacked
from orchestrator.errors import ImageError


def layer(*members: tuple[str, str, bytes | str]) -> bytes:
    """An uncompressed layer: (kind, name, data or link target), kind file|dir|sym|chr."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(data, bytes)
                info.size, info.mode = len(data), 0o4755 if name.endswith("suid") else 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                         "chr": tarfile.CHRTYPE, "hard": tarfile.LNKTYPE}[kind]
            info.mode = 0o755
            if kind in ("sym", "hard"):
                info.linkname = str(data)
            tar.addfile(info)
    return out.getvalue()


def archive(layers: list[bytes], diff_ids: list[str] | None = None,
            config_extra: dict | None = None) -> tuple[bytes, str]:
    config = json.dumps({"config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids or [
                             "sha256:" + hashlib.sha256(x).hexdigest() for x in layers]},
                         **(config_extra or {})}).encode()
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    names = [f"blobs/sha256/{hashlib.sha256(x).hexdigest()}" for x in layers]
    manifest = json.dumps([{"Config": f"blobs/sha256/{image_id[7:]}", "RepoTags": [],
                            "Layers": names}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in [*zip(names, layers, strict=True),
                           (f"blobs/sha256/{image_id[7:]}", config),
                           ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue(), image_id


def chunks(data: bytes, size: int = 1000):
    return (data[i:i + size] for i in range(0, len(data), size))


def test_layers_apply_in_order_with_whiteouts_and_the_id_is_checked(tmp_path):
    lower = layer(("dir", "etc", b""), ("file", "etc/keep", b"kept"), ("file", "etc/gone", b"x"),
                  ("dir", "opt/app", b""), ("file", "opt/app/old", b"old"),
                  ("file", "bin/suid", b"#!"), ("sym", "lib", "usr/lib"),
                  ("hard", "etc/also", "etc/keep"))
    upper = layer(("file", "etc/.wh.gone", b""), ("file", "opt/app/.wh..wh..opq", b""),
                  ("file", "opt/app/new", b"new"), ("file", "etc/keep", b"replaced"),
                  ("chr", "dev/evil", b""))
    data, image_id = archive([lower, upper])
    images = Unpacked(tmp_path / "cache")
    assert images.load(chunks(data)) == [image_id]
    root = images.root(image_id)
    assert (root / "etc" / "keep").read_bytes() == b"replaced"
    assert (root / "etc" / "also").read_bytes() == b"kept"  # a hard link of the lower layer
    assert not (root / "etc" / "gone").exists()
    assert sorted(p.name for p in (root / "opt" / "app").iterdir()) == ["new"]
    assert not (root / "dev" / "evil").exists()  # device nodes never kept
    assert (root / "bin" / "suid").stat().st_mode & 0o6000 == 0  # nor set-id bits
    assert (root / "repro").is_dir() and (root / "run" / "secrets").is_dir()  # mount points
    info = images.image(image_id)
    assert info is not None and info["env"] == ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"]
    images.tag(image_id, "repro/loaded", "abc")
    assert images.image("repro/loaded:abc")["id"] == image_id
    assert images.load(chunks(data)) == [image_id]  # the second time: kept as it is


@pytest.mark.parametrize("members", [
    # a link out of the image, then a file through it
    [("sym", "escape", "/tmp/OUTSIDE"), ("file", "escape/planted", b"x")],
    # a relative one
    [("sym", "up", "../../../../../../OUTSIDE"), ("file", "up/planted", b"x")],
])
def test_a_layer_that_reaches_outside_through_a_link_is_refused(tmp_path, members):
    outside = tmp_path / "OUTSIDE"
    outside.mkdir()
    members = [(k, n, str(outside) if d == "/tmp/OUTSIDE" else d) for k, n, d in members]
    data, _ = archive([layer(*members)])
    with pytest.raises(ImageError, match="outside the (image|destination)"):
        Unpacked(tmp_path / "cache").load(chunks(data))
    assert list(outside.iterdir()) == []
    assert not list((tmp_path / "cache" / "images").glob("[0-9a-f]*"))  # nothing complete


def test_a_hard_link_to_a_file_outside_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host file")
    for target in ("../../../../../../../.." + str(secret), str(secret)):
        data, _ = archive([layer(("hard", "stolen", target))])
        with pytest.raises(ImageError, match="outside the image"):
            Unpacked(tmp_path / "cache").load(chunks(data))
    assert secret.stat().st_nlink == 1


def test_a_whiteout_never_removes_anything_outside(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("mine")
    data, image_id = archive([layer(("sym", "out", str(tmp_path))),
                              layer(("file", "out/.wh.victim", b""),
                                    ("file", "../.wh.victim", b""))])
    Unpacked(tmp_path / "cache").load(chunks(data))
    assert victim.read_text() == "mine"


def test_an_archive_whose_layer_or_config_does_not_match_is_refused(tmp_path):
    good = layer(("file", "a", b"a"))
    data, _ = archive([good], diff_ids=["sha256:" + "0" * 64])
    with pytest.raises(ImageError, match="does not match its diff_id"):
        Unpacked(tmp_path / "cache").load(chunks(data))
    with pytest.raises(ImageError, match="no manifest.json"):
        Unpacked(tmp_path / "cache").load(chunks(layer(("file", "x", b"x"))))
    with pytest.raises(ImageError, match="not an image id"):
        Unpacked(tmp_path / "cache").root("sha256:../../etc")
    assert Unpacked(tmp_path / "cache").image("sha256:" + "1" * 64) is None
