"""Image recipes against the real engine: a recipe this machine built before is never built
twice, even after the engine lost the image (it comes back from the store's archive)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import launch_json
from tests.integration.test_replay import run_json, unique_image_project


@pytest.mark.archive
def test_a_recipe_built_here_before_comes_back_from_the_store_not_a_rebuild(proj, engine):
    spec = unique_image_project(proj)
    p, run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    image_id = run["resolved"]["image"]["digest"]
    engine.remove_image(image_id)  # every tag with it (docker image prune -a, say)
    assert engine.image(image_id) is None
    p, built = run_json("image", "build", "images/unique", cwd=proj)
    assert p.returncode == 0, p.stderr
    assert built["reused"] and built["id"] == image_id  # the same bytes, not a new build
    assert "loading it from the store instead of rebuilding" in p.stderr
    assert built["tag"].startswith("repro/project/unique:")
    assert engine.image(built["tag"])["id"] == image_id
    p, again = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    assert again["resolved"]["image"]["digest"] == image_id
