"""Image recipe identity: what a digest covers, how builds are named, and when a build is
reused (against the fake engine; the real one is in tests/integration/test_images.py)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.engine import LABEL_RECIPE
from orchestrator.engine.images import RECIPES, build
from orchestrator.engine.recipe import folder_digest, repository
from orchestrator.hashing import short
from orchestrator.store import open_store
from tests.fakes import FakeEngine


def recipe(folder: Path, dockerfile: str = "FROM scratch\nCOPY app.py /\n") -> Path:
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile)
    (folder / "app.py").write_text("print(1)\n")
    return folder


def builds(engine: FakeEngine) -> list[str]:
    return [arg for call, arg in engine.calls if call == "build"]


def test_digest_ignores_what_dockerignore_leaves_out(tmp_path):
    folder = recipe(tmp_path / "train")
    (folder / ".dockerignore").write_text("data\n")
    (folder / "data").mkdir()
    (folder / "data" / "big.bin").write_bytes(b"1")
    before = folder_digest(folder)
    (folder / "data" / "big.bin").write_bytes(b"2" * 1000)
    assert folder_digest(folder) == before
    (folder / "app.py").write_text("print(2)\n")
    assert folder_digest(folder) != before


def test_recipes_are_named_by_their_project(tmp_path):
    (tmp_path / "vision" / ".git").mkdir(parents=True)
    folder = recipe(tmp_path / "vision" / "images" / "Train")
    assert repository(folder) == "repro/vision/train"
    assert repository(recipe(tmp_path / "loose" / "base")) == "repro/base"


def test_same_recipe_in_two_projects_is_built_once_and_named_in_each(tmp_path):
    engine = FakeEngine()
    a = recipe(tmp_path / "a" / "images" / "train")
    b = recipe(tmp_path / "b" / "images" / "train")
    for project in ("a", "b"):
        (tmp_path / project / ".git").mkdir()
    first = build(a, engine, lambda _: None)
    second = build(b, engine, lambda _: None)
    assert not first.reused and second.reused and second.id == first.id
    assert first.tag.startswith("repro/a/train:") and second.tag.startswith("repro/b/train:")
    assert engine.image(second.tag)["id"] == first.id
    assert engine.image(f"{RECIPES}:{short(first.recipe_digest)}")["id"] == first.id
    assert len(builds(engine)) == 1


def test_an_image_that_only_claims_the_recipe_in_its_label_is_not_reused(tmp_path):
    folder = recipe(tmp_path / "train")
    digest = folder_digest(folder)
    engine = FakeEngine()
    # say, loaded from someone's bundle: repro tags those repro-loaded:<id12>, never by recipe
    engine.images["repro-loaded:0123456789ab"] = {
        "id": "sha256:" + "e" * 64, "repo_digests": [], "labels": {LABEL_RECIPE: digest},
        "size": 1, "tags": ["repro-loaded:0123456789ab"]}
    built = build(folder, engine, lambda _: None)
    assert not built.reused and built.id != "sha256:" + "e" * 64


def test_a_tag_whose_label_disagrees_is_rebuilt(tmp_path):
    folder = recipe(tmp_path / "train")
    engine = FakeEngine()
    tag = f"repro/train:{short(folder_digest(folder))}"
    engine.images[tag] = {"id": "sha256:" + "f" * 64, "repo_digests": [],
                          "labels": {LABEL_RECIPE: "sha256:" + "0" * 64}, "size": 1, "tags": []}
    assert not build(folder, engine, lambda _: None).reused


def test_the_store_remembers_what_each_recipe_was_built_into(tmp_path):
    store = open_store(tmp_path / "home")
    folder = recipe(tmp_path / "train")
    engine = FakeEngine()
    built = build(folder, engine, lambda _: None, store=store)
    assert store.runs.recipe_image(built.recipe_digest) == built.id
    # every tag gone (docker image prune), the image itself still there: found by the store
    for ref in [r for r in engine.images if r.startswith("repro/")]:
        del engine.images[ref]
    again = build(folder, engine, lambda _: None, store=store)
    assert again.reused and again.id == built.id and len(builds(engine)) == 1
    assert engine.image(again.tag)["id"] == built.id  # named again
