"""The one extractor every archive goes through (issue 21, C1): crafted tars that escaped
tarfile's data filter on Python 3.11.7 (links that lead out, a member written through an
earlier link, hard links, devices), limits, and a fuzzer of member sequences that must
either unpack inside the folder or be refused, never write outside it."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.archives import Limits, UnsafeArchive, extract_tar, link_stays_inside
from tests.unit.test_fuzz import FUZZ


def tar_of(*members: tuple[str, str, bytes | str]) -> io.BytesIO:
    """A tar of (kind, name, data-or-link-target) members, in that order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                raw = data if isinstance(data, bytes) else data.encode()
                info.size, info.mode = len(raw), 0o644
                tar.addfile(info, io.BytesIO(raw))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                         "hard": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = data if isinstance(data, str) else ""
            info.mode = 0o755
            tar.addfile(info)
    buf.seek(0)
    return buf


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    """An empty destination, and a folder beside it that must stay untouched."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "keep").write_text("mine")
    return dest, outside


def untouched(outside: Path) -> bool:
    return sorted(os.listdir(outside)) == ["keep"] and (outside / "keep").read_text() == "mine"


def test_a_plain_snapshot_unpacks_as_tarfile_would(place):
    dest, _ = place
    n = extract_tar(tar_of(("dir", "pkg", ""), ("file", "pkg/a.py", "x = 1\n"),
                           ("file", "train.py", "print(1)\n"), ("sym", "latest", "pkg/a.py"),
                           ("file", "deep/er/b.txt", "b")), dest, "t")
    assert n == 5
    assert (dest / "pkg" / "a.py").read_text() == "x = 1\n"
    assert os.readlink(dest / "latest") == "pkg/a.py"
    assert (dest / "deep" / "er" / "b.txt").read_text() == "b"
    assert os.stat(dest / "train.py").st_mtime == 0  # times as in the archive


NOT_A_FOLDER = "to be a folder, but the archive made it a link or a file"


@pytest.mark.parametrize("members, why", [
    ([("file", "/etc/x", "a")], "not a plain relative path"),
    ([("file", "../x", "a")], "not a plain relative path"),
    ([("file", "a/../../x", "a")], "not a plain relative path"),
    ([("sym", "up", "../outside")], "leaves the archive's folder"),
    ([("sym", "abs", "/etc")], "leaves the archive's folder"),
    ([("sym", "a", "b/../..")], "leaves the archive's folder"),
    # the CVE-2025-4517 family: a link inside first, then a member written through it
    ([("dir", "sub", ""), ("sym", "d", "sub"), ("file", "d/x", "a")], NOT_A_FOLDER),
    ([("sym", "d", "."), ("sym", "d/e", "..")], NOT_A_FOLDER),
    ([("file", "f", "a"), ("file", "f/x", "b")], NOT_A_FOLDER),
    ([("hard", "h", "/etc/passwd")], "is a hard link"),
    ([("chr", "zero", "")], "is a device or FIFO"),
    ([("fifo", "pipe", "")], "is a device or FIFO"),
    ([("file", "a", "1"), ("file", "./a", "2")], "appears twice"),
])
def test_crafted_members_are_refused_and_nothing_leaves_the_folder(place, members, why):
    dest, outside = place
    with pytest.raises(UnsafeArchive, match=why):
        extract_tar(tar_of(*members), dest, "code snapshot sha256:abc")
    assert untouched(outside)


def test_limits_hold_on_count_size_and_depth(place):
    dest, outside = place
    small = Limits(members=2, member_bytes=10, total_bytes=15, depth=3)
    with pytest.raises(UnsafeArchive, match="more than 2 members"):
        extract_tar(tar_of(*[("file", f"f{i}", "x") for i in range(3)]), dest, "t", small)
    for sub in (dest / "b", dest / "c"):
        sub.mkdir()
    with pytest.raises(UnsafeArchive, match="passes the size limit"):
        extract_tar(tar_of(("file", "big", "x" * 11)), dest / "b", "t", small)
    with pytest.raises(UnsafeArchive, match="passes the size limit"):
        extract_tar(tar_of(("file", "a", "x" * 8), ("file", "b", "x" * 8)), dest / "c", "t",
                    small)
    with pytest.raises(UnsafeArchive, match="not a plain relative path"):
        extract_tar(tar_of(("file", "a/b/c/d", "x")), dest, "t", small)
    assert untouched(outside)


def test_garbage_is_not_a_readable_archive(place):
    dest, _ = place
    with pytest.raises(UnsafeArchive, match="not a readable archive"):
        extract_tar(io.BytesIO(b"\x00garbage" * 200), dest, "t")
    truncated = tar_of(("file", "a", "x" * 5000)).getvalue()[:1500]
    (dest / "t").mkdir()
    with pytest.raises(UnsafeArchive, match="not a readable archive"):
        extract_tar(io.BytesIO(truncated), dest / "t", "t")


def test_link_targets_are_judged_from_the_links_own_folder():
    assert link_stays_inside(["a", "b", "l"], "../c")
    assert link_stays_inside(["a", "l"], "../c")
    assert not link_stays_inside(["l"], "../c")
    assert not link_stays_inside(["a", "l"], "../../c")
    assert link_stays_inside(["a", "l"], "./x/../y")


NAMES = st.sampled_from(["a", "b", "a/b", "a/c", "b/a", "..", "../a", "a/..", "/a", ".",
                         "./a", "a//b", "link", "link/x", "c/d/e"])
TARGETS = st.sampled_from([".", "..", "a", "../..", "/etc", "b/../..", "a/b", "link", "../x"])
MEMBER = st.tuples(st.sampled_from(["file", "dir", "sym", "hard", "fifo"]), NAMES, TARGETS)


@FUZZ
@given(members=st.lists(MEMBER, max_size=8))
def test_any_member_sequence_unpacks_inside_or_is_refused(tmp_path_factory, members):
    root = tmp_path_factory.mktemp("fuzz")
    dest, outside = root / "dest", root / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "keep").write_text("mine")
    tar = tar_of(*[(k, n, t if k in ("sym", "hard") else "data") for k, n, t in members])
    try:
        extract_tar(tar, dest, "fuzz")
    except UnsafeArchive:
        pass
    assert untouched(outside)
    for folder, dirs, files in os.walk(dest):  # nothing but files, folders, inner links
        for name in dirs + files:
            path = Path(folder, name)
            assert path.is_symlink() or path.is_file() or path.is_dir()
            if path.is_symlink():
                assert os.path.realpath(path).startswith(str(dest.resolve()))


def test_an_npz_is_checked_before_numpy_decompresses_it(tmp_path):
    """Issue 21 M3: a 1 MB .npz made verify use 3.2 GB. Its directory is read first: the
    declared sizes (which zipfile never reads past) and the names."""
    import zipfile

    import numpy as np

    from orchestrator.archives import check_zip
    from orchestrator.content import explain

    bomb = tmp_path / "w.npz"
    np.savez_compressed(bomb, w=np.zeros(300_000))  # 2.4 MB of zeros, a few KB on disk
    assert bomb.stat().st_size < 50_000
    check_zip(bomb, "w.npz", max_bytes=3 << 20)  # under the cap: fine
    with pytest.raises(UnsafeArchive, match=r"w.npz: decompresses to more than 1 MiB"):
        check_zip(bomb, "w.npz", max_bytes=1 << 20)
    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(odd, "w") as z:
        z.writestr("../w.npy", b"x")
    with pytest.raises(UnsafeArchive, match="not a plain relative path"):
        check_zip(odd, "odd.npz", max_bytes=1 << 20)
    note = explain("odd.npz", odd, odd)
    assert note is not None and note["summary"].startswith("not compared by content")


def test_an_input_mount_point_never_goes_through_a_link_of_the_snapshot(tmp_path):
    """A mount point is made in the job's copy of its code: a link the snapshot holds on its
    way (`data -> /etc`, or an inner one) is replaced, never followed, and nothing outside
    the copy is touched or re-moded."""
    from orchestrator.workdir import lay_out

    snap, outside = tmp_path / "snap", tmp_path / "outside"
    snap.mkdir()
    outside.mkdir(mode=0o755)
    (snap / "train.py").write_text("x")
    (snap / "data").symlink_to(outside)  # an old cached snapshot could hold one
    (snap / "inner").mkdir()
    (snap / "alias").symlink_to("inner")
    dest = lay_out(tmp_path / "work", snap, {"data/raw": True, "alias/names.txt": False})
    assert not (dest / "data").is_symlink() and (dest / "data" / "raw").is_dir()
    assert not (dest / "alias").is_symlink() and (dest / "alias" / "names.txt").is_file()
    assert list(outside.iterdir()) == [] and oct(outside.stat().st_mode & 0o777) == "0o755"
    assert list((dest / "inner").iterdir()) == []
