"""`repro image build|freeze|push`: images from the recipes in images/."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from .base import (
    JsonOpt,
    image_app,
)


@image_app.command("build")
def image_build(
    folder: Annotated[Path, typer.Argument(
        help="Recipe folder, e.g. images/train, or a shipped recipe: python, python-torch.")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if built.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Build an image recipe (and its base) into the local engine; a no-op when up to date."""
    from .. import ui
    from ..engine import connect
    from ..engine.images import build
    from ..engine.recipe import find
    from ..store import open_store

    folder = find(str(folder), Path.cwd()) or folder
    built = build(folder, connect(), on_line=ui.progress, force=force, store=open_store())
    doc = {"id": built.id, "tag": built.tag, "recipe": built.recipe,
           "recipe_digest": built.recipe_digest, "reused": built.reused}
    if json_:
        ui.print_json(doc)
    else:
        typer.echo(f"{built.tag}  {built.id}" + ("  (up to date)" if built.reused else ""))


@image_app.command("freeze")
def image_freeze(
    image: Annotated[str, typer.Argument(
        help="Image id or reference, e.g. repro/PROJECT/train:latest.")],
    json_: JsonOpt = False,
) -> None:
    """Print the lock of what an image has installed (NAME==VERSION lines), e.g. to pin a
    distribution's own builds: `repro image freeze IMAGE > requirements.lock`."""
    from .. import ui
    from ..engine import connect
    from ..engine.images import freeze

    lines = freeze(image, connect())
    if json_:
        ui.print_json({"image": image, "lock": lines})
    else:
        typer.echo("\n".join(lines))


@image_app.command("push")
def image_push(
    image: Annotated[str, typer.Argument(
        help="Image id or reference, e.g. repro/PROJECT/train:latest.")],
    repository: Annotated[str, typer.Argument(help="REGISTRY/NAME to push to.")],
    tag: Annotated[str | None, typer.Option("--tag", help="Tag (default: id prefix).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Push an image to a registry and record its repository digest for replays."""
    from .. import ui
    from ..engine import connect
    from ..errors import ImageError
    from ..hashing import short, shown
    from ..store import open_store

    engine = connect()
    info = engine.image(image)
    if info is None:
        raise ImageError(f"image {image} is not in the engine; build it with `repro image "
                         "build` or pull it first")
    digest = engine.push(info["id"], repository, tag or short(info["id"]), ui.progress)
    open_store().runs.add_push(info["id"], repository, digest)
    pinned = f"{repository}@{digest}"
    if json_:
        ui.print_json({"image": info["id"], "repository": repository, "digest": digest,
                       "ref": pinned})
    else:
        typer.echo(f"pushed {shown(info['id'])}... as {pinned}\nuse it in a spec as: "
                   f"image: {{ref: {pinned}}}")
