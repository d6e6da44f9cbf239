"""Image recipes against the real engine: a recipe this machine built before is never built
twice, even after the engine lost the image (it comes back from the store's archive)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from orchestrator.engine.image_archive import complete
from orchestrator.store import open_store
from tests.integration.conftest import add_spec, launch_json
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


@pytest.mark.archive
def test_a_new_image_is_archived_while_its_job_runs_and_the_record_waits_for_it(proj, home,
                                                                                engine):
    """First use of an image: its archive is written beside the job, layers the store holds
    (the base's, from an earlier run) are not stored again, and the record names the
    archive only once it is whole: the image comes back from it after the engine lost it."""
    p, _ = launch_json(proj, proj / "specs" / "hello.yaml")  # the base's layers: in the store
    assert p.returncode == 0, p.stderr
    spec = unique_image_project(proj)
    p, run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    image = run["resolved"]["image"]
    assert "into the store while the job runs (first use of this image)" in p.stderr
    assert re.search(r"archived image \S+: \d+ MiB \(\d+ MiB of layers already in the store\)",
                     p.stderr), p.stderr
    # the archive is in the record, in the images table, whole; no temp file is left over
    store = open_store(home)
    assert store.runs.get(run["id"]).resolved.image.archive == image["archive"]
    assert store.runs.image_archive(image["digest"])[0] == image["archive"]
    assert complete(image["archive"], store)
    assert list((home / "artifacts" / "tmp").glob("in-*")) == []
    # a later launch of the image uses the archive: nothing is archived again
    p, again = launch_json(proj, spec)
    assert p.returncode == 0 and "archiving image" not in p.stderr
    assert again["resolved"]["image"]["archive"] == image["archive"]
    try:
        engine.remove_image(image["digest"])
        p, rep = run_json("verify", run["id"], cwd=proj)
        assert p.returncode == 0, p.stderr
        assert "loading image" in p.stderr and rep["verdict"]["result"] == "identical"
    finally:
        engine.remove_image(image["digest"])


@pytest.mark.archive
def test_ctrl_c_stops_an_archive_beside_the_job_and_the_record_says_so(proj, home, engine):
    spec = unique_image_project(proj)
    long = add_spec(proj, "long", """\
        image: {build: ../images/unique}
        command: [python3, -c, "import time; print('started', flush=True); time.sleep(120)"]
        """)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                             str(long.relative_to(proj)), "--json"], cwd=proj,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # the archive has just begun: the base alone takes seconds
        seen.append(line)
        if "into the store while the job runs" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out, "".join(seen) + err
    rec = json.loads(out)
    image = rec["resolved"]["image"]
    try:
        assert rec["status"] == "interrupted" and image["archive"] is None
        assert any("(it was stopped before it was whole)" in w and "a replay needs it in this "
                   "engine" in w for w in rec["warnings"]), rec["warnings"]
        assert open_store(home).runs.image_archive(image["digest"]) is None
        assert list((home / "artifacts" / "tmp").glob("in-*")) == []
        # the next launch of the image archives it
        p, run = launch_json(proj, spec)
        assert p.returncode == 0, p.stderr
        assert run["resolved"]["image"]["archive"] is not None
    finally:
        engine.remove_image(image["digest"])
