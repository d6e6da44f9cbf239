"""Does building the same recipe twice give the same image? `make rebuild-check`.

Builds each recipe twice with ``--force`` (its base reused, so only the recipe's own step is
rebuilt) and compares the image ids and each layer's content digest (diff_id: the sha256 of
the uncompressed layer tar). Prints a Markdown table; ``--write`` replaces the section of
BENCHMARKS.md between its markers.

Recipes: the shipped ``debian`` (debootstrap rootfs), the shipped ``python`` (a Dockerfile:
venv), and a lock recipe on ``python`` (pip install --require-hashes of one small wheel from
PyPI, through this machine's CA bundle).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.engine import connect  # noqa: E402
from orchestrator.engine.images import build  # noqa: E402
from orchestrator.recipes import shipped  # noqa: E402

BEGIN, END = "<!-- rebuild-check:begin -->", "<!-- rebuild-check:end -->"
SIX = ("six==1.16.0 \\\n    --hash=sha256:"
       "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n")


def layers(image_id: str) -> list[str]:
    out = subprocess.run(["docker", "image", "inspect", image_id], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]["RootFS"]["Layers"]


def twice(name: str, folder: Path, engine) -> dict:
    runs, members = [], []
    for _ in range(2):
        start = time.monotonic()
        built = build(folder, engine, on_line=lambda _: None, force=True)
        runs.append((built.id, layers(built.id), time.monotonic() - start))
        members.append(top_layer_members(built.id))
        if len(runs) == 1:  # with its tags and the build cache's intermediate images: a
            engine.remove_image(built.id)  # second build may not reuse a single step
    (a, la, ta), (b, lb, _) = runs
    own = [i for i in range(len(la)) if i >= len(lb) or la[i] != lb[i]]
    new_layers = len(la) - _shared_prefix(la, layers_of_base(folder, engine))
    differ = sorted(set(members[0]) ^ set(members[1]))
    files = sorted({m[0] for m in differ})
    return {"recipe": name, "same_id": a == b, "layers": len(la), "own_layers": new_layers,
            "differing_layers": len(own), "build_s": ta, "files": files}


def top_layer_members(image_id: str) -> list[tuple]:
    """(name, mtime, mode, uid, gid, content sha256) of every entry of the image's last
    layer, from `docker save`."""
    import hashlib
    import tarfile

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp, "image.tar")
        with open(archive, "wb") as f:
            subprocess.run(["docker", "save", image_id], stdout=f, check=True)
        with tarfile.open(archive) as outer:
            manifest = json.load(outer.extractfile("manifest.json"))
            layer = outer.extractfile(manifest[0]["Layers"][-1])
            out = []
            with tarfile.open(fileobj=layer) as tar:
                for m in tar:
                    data = tar.extractfile(m).read() if m.isfile() else m.linkname.encode()
                    out.append((m.name, m.mtime, m.mode, m.uid, m.gid,
                                hashlib.sha256(data).hexdigest()))
    return out


def layers_of_base(folder: Path, engine) -> list[str]:
    from orchestrator.engine.recipe import load

    recipe = load(folder)
    if recipe.base is None:
        return []
    return layers(build(recipe.base, engine, on_line=lambda _: None).id)


def _shared_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    engine = connect()
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp, "lockrecipe")
        lock.mkdir()
        (lock / "recipe.yaml").write_text("base: python\nlock: requirements.lock\n")
        (lock / "requirements.lock").write_text(SIX)
        rows = [twice("debian (debootstrap rootfs)", shipped("debian"), engine),
                twice("python (Dockerfile: venv)", shipped("python"), engine),
                twice("lock on python (pip --require-hashes)", lock, engine)]
    lines = [f"Measured by `make rebuild-check` (`benchmarks/rebuild.py`) on "
             f"{time.strftime('%Y-%m-%d')}: each recipe built twice with `--force`, its base "
             "reused.", "",
             "| recipe | same image id | its own layers | of those, differing | files that "
             "differ in its last layer | build |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        files = ", ".join(f"`{f}`" for f in r["files"][:4]) + (
            f" and {len(r['files']) - 4} more" if len(r["files"]) > 4 else "")
        lines.append(f"| {r['recipe']} | {'yes' if r['same_id'] else 'no'} | "
                     f"{r['own_layers']} | {r['differing_layers']} | {files or 'none'} | "
                     f"{r['build_s']:.1f} s |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        path.write_text(text[:start] + "\n" + table + "\n" + text[end:])


if __name__ == "__main__":
    main()
