"""The dashboard in a real headless Chromium against a real server on a real store."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.web import check_bind, make_server
from tests.helpers import ROOT, copy_project, repro

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]
SHOTS = (ROOT / "docs" / "screenshots") if os.environ.get("REPRO_UPDATE_SCREENSHOTS") else None


@pytest.fixture(scope="module")
def populated(tmp_path_factory, images, engine):
    """A store with a grid sweep, a replayed run (identical) and a verify that differs."""
    base = tmp_path_factory.mktemp("dash")
    proj = copy_project(base / "project")
    env = {"REPRO_HOME": str(base / "home"), "REPRO_ARCHIVE_IMAGES": "0"}
    sweep = repro("sweep", "specs/digits-mlp.yaml", "--grid", "lr=0.05,0.3", "--grid",
                  "hidden=4,16", "--param", "epochs=3", "-j", "2", "--json", cwd=proj, env=env)
    assert sweep.returncode == 0, sweep.stderr
    hello = json.loads(repro("launch", "specs/hello.yaml", "--json", cwd=proj,
                             env={**env, "REPRO_USER": "alice@example.com"}).stdout)
    replay = json.loads(repro("replay", hello["id"], "--json", cwd=proj, env=env).stdout)
    nondet = json.loads(repro("launch", "specs/nondeterministic.yaml", "--json", cwd=proj,
                              env=env).stdout)
    differs = json.loads(repro("verify", nondet["id"], "--json", cwd=proj, env=env).stdout)
    repro("tag", hello["id"], "stage=baseline", cwd=proj, env=env)
    return {"home": base / "home", "sweep": json.loads(sweep.stdout), "hello": hello,
            "replay": replay, "differs": differs}


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory, images, engine):
    """A store (of its own: a diagnosis adds replays) with async-sgd, diagnosed."""
    base = tmp_path_factory.mktemp("diag")
    proj = copy_project(base / "project")
    env = {"REPRO_HOME": str(base / "home"), "REPRO_ARCHIVE_IMAGES": "0"}
    sgd = json.loads(repro("launch", "specs/async-sgd.yaml", "--json", cwd=proj,
                           env=env).stdout)
    diagnosis = json.loads(repro("diagnose", sgd["id"], "--replays", "1", "--json", cwd=proj,
                                 env=env).stdout)
    return {"home": base / "home", "sgd": sgd, "diagnosis": diagnosis}


@contextmanager
def serving(home: Path) -> Iterator[str]:
    srv = make_server(home, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def server(populated):
    with serving(populated["home"]) as url:
        yield url


@pytest.fixture(scope="module")
def diag_server(diagnosed):
    with serving(diagnosed["home"]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert errors == [], errors


def visit(page, url: str, ready: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"body[data-ready={ready}]", timeout=30_000)


def shot(page, name: str, tmp_path: Path) -> Path:
    path = (SHOTS or tmp_path) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=name != "runs")
    assert path.stat().st_size > 20_000  # a rendered page, not a blank one
    return path


def test_runs_table_loads_filters_and_sorts(page, server, populated, tmp_path):
    visit(page, f"{server}/#/runs", "runs")
    total = page.locator("#total").inner_text()
    assert total.startswith("8 run(s)")  # 4 sweep points, hello, its replay, nondet, verify
    assert page.locator("tr.row").count() == 8
    shot(page, "runs", tmp_path)
    page.fill("#where", "params.hidden > 8 and status = succeeded")
    page.press("#where", "Enter")
    page.wait_for_function("document.querySelectorAll('tr.row').length === 2")
    assert page.locator("#total").inner_text().startswith("2 run(s)")
    page.click("th:has-text('metrics.val_accuracy')")
    page.wait_for_selector("th:has-text('metrics.val_accuracy ▲')")
    page.fill("#where", "params.hidden >> 8")
    page.press("#where", "Enter")
    page.wait_for_selector("#error")
    assert "column" in page.locator("#error").inner_text()


def test_runs_table_shows_users_filters_by_one_and_marks_published(page, server, populated):
    from orchestrator.store import open_store

    store = open_store(populated["home"])
    store.runs.publish(populated["hello"]["id"], None, None, "carol")
    store.close()
    visit(page, f"{server}/#/runs", "runs")
    row = page.locator(f"tr.row[data-id='{populated['hello']['id']}']")
    assert "★" in row.inner_text()
    assert page.locator("span.published").count() == 1
    row.locator("a.user").click()  # only alice's runs
    page.wait_for_function("document.querySelectorAll('tr.row').length === 1")
    assert page.locator("#where").input_value() == "user = 'alice@example.com'"
    assert page.locator("tr.row").get_attribute("data-id") == populated["hello"]["id"]


def test_run_page_shows_outputs_with_digests_curves_and_logs(page, server, populated,
                                                             tmp_path):
    best = populated["sweep"]["runs"][0]["id"]
    rec = json.loads(repro("show", best, "--json", env={"REPRO_HOME": str(populated["home"])}
                           ).stdout)
    visit(page, f"{server}/#/run/{best}", "run")
    shas = page.locator("#outputs td.sha").all_inner_texts()
    assert sorted(shas) == sorted(f["sha256"] for f in rec["outputs"].values())
    assert page.locator("#image-digest").inner_text() == rec["resolved"]["image"]["digest"]
    assert page.locator("#curves canvas").count() == 2  # loss and val_accuracy
    page.wait_for_function("!document.getElementById('logs').textContent.includes('loading')")
    assert "epoch   3/3" in page.locator("#logs").inner_text()
    href = page.locator("#outputs a").first.get_attribute("href")
    with urllib.request.urlopen(server + href) as resp:
        body = resp.read()
    import hashlib

    assert hashlib.sha256(body).hexdigest() in shas
    shot(page, "run", tmp_path)


def test_replay_lineage_and_verdicts(page, server, populated):
    visit(page, f"{server}/#/run/{populated['hello']['id']}", "run")
    assert page.locator(".verdict-identical").count() == 1
    assert page.locator("#verified").inner_text().startswith("verified: full by ")
    visit(page, f"{server}/#/run/{populated['differs']['id']}", "run")
    assert "samples.txt" in page.locator("#verdict-diff").inner_text()
    assert page.locator(".verdict-differs").count() >= 1
    assert "samples.txt: 6 of 6 lines differ, first at line 1" in page.locator(
        "#verdict-content").inner_text()


def test_a_diagnosis_on_the_run_page_and_where_a_replay_parts_ways(page, diag_server,
                                                                   diagnosed, tmp_path):
    server, populated = diag_server, diagnosed
    visit(page, f"{server}/#/run/{populated['sgd']['id']}", "run")
    text = page.locator("#diagnosis").inner_text()
    assert "NONDETERMINISTIC" in text and "the thread count: threads race" in text
    assert "weights.npy: " in text  # each cause once, its files under it
    assert "try: combine per-thread results" in text
    experiments = page.locator("#experiments tbody tr").count()
    assert experiments == len(populated["diagnosis"]["experiments"])
    shot(page, "diagnosis", tmp_path)
    plain = populated["diagnosis"]["runs"][0]["run"]  # a replay whose loss curve parts ways
    visit(page, f"{server}/#/run/{plain}", "run")
    assert "series loss parts ways with the original at step" in page.locator(
        "#verdict-series").inner_text()
    labels = page.evaluate("Chart.getChart(document.querySelector('#curves canvas'))"
                           ".data.datasets.map(d => d.label)")
    assert any(label.startswith("parts ways with the original (step ") for label in labels)


def test_compare_shows_differences_and_overlaid_curves(page, server, populated, tmp_path):
    visit(page, f"{server}/#/runs?where=sweep%20%3D%20{populated['sweep']['sweep']}", "runs")
    boxes = page.locator("tr.row input[type=checkbox]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare")
    page.wait_for_selector("body[data-ready=compare]")
    differing = page.locator("#cmp-params tr.differs th").all_inner_texts()
    assert differing and set(differing) <= {"lr", "hidden"}
    rows = " ".join(page.locator("#cmp-outputs tr.differs").all_inner_texts())
    assert "weights/w1.npy" in rows
    labels = page.evaluate("Chart.getChart(document.querySelector('#curves canvas'))"
                           ".data.datasets.map(d => d.label)")
    curves = [x for x in labels if "parts ways" not in x]
    assert len(curves) == 2  # one per run, and a marker where the second leaves the first
    assert [x for x in labels if "parts ways (step " in x]
    assert "weights/w1.npy of" in page.locator("#cmp-content").inner_text()
    shot(page, "compare", tmp_path)


def test_runs_grouped_by_sweep_open_in_place(page, server, populated, tmp_path):
    sweep = populated["sweep"]["sweep"]
    visit(page, f"{server}/#/runs?cols=params.lr,params.hidden,metrics.val_accuracy", "runs")
    page.click("#group-sweeps")
    page.wait_for_selector("#sweep-groups")
    group = page.locator(f"tr.group[data-sweep='{sweep}']")
    cells = group.locator("td").all_inner_texts()
    assert cells[1] == sweep and cells[3] == "4" and cells[4] == "4 succeeded"
    accs = [r["metrics"]["val_accuracy"] for r in populated["sweep"]["runs"]]
    low, high = cells[6].split(" – ")
    assert abs(float(low) - min(accs)) < 1e-5 and abs(float(high) - max(accs)) < 1e-5
    # the other four runs (hello, its replay, nondeterministic and its verify) are outside
    assert page.locator("#outside").inner_text() == "4 matching run(s) outside sweeps"
    group.click()
    inner = page.locator(f"tr.group-runs[data-sweep='{sweep}'] tbody tr")
    inner.first.wait_for()
    assert inner.count() == 4  # best first: sorted by the metric column
    assert "null" not in page.locator(f"tr.group-runs[data-sweep='{sweep}']").inner_text()
    firsts = [float(t.split("\t")[-1]) for t in inner.all_inner_texts()]
    assert firsts == sorted(firsts, reverse=True)
    shot(page, "runs-grouped", tmp_path)
    # a filter applies inside the groups too
    page.fill("#where", "params.hidden > 8")
    page.press("#where", "Enter")
    page.wait_for_function("document.querySelector('#sweep-groups tr.group td:nth-child(4)')"
                           "?.textContent === '2'")
    page.click("#outside")
    page.wait_for_selector("#runs-table")
    page.wait_for_function("document.querySelector('#total')?.textContent.startsWith('0 run')")


def test_sweep_parallel_coordinates(page, server, populated, tmp_path):
    visit(page, f"{server}/#/sweep/{populated['sweep']['sweep']}", "sweep")
    assert page.locator("#parallel path").count() == 4
    shot(page, "sweep", tmp_path)


def test_importance_chart_renders(page, server, populated, tmp_path):
    where = f"sweep = {populated['sweep']['sweep']}"
    visit(page, f"{server}/#/importance?metric=val_accuracy&where="
          f"{urllib.request.quote(where)}", "importance")
    rows = page.locator("#importance-table tbody tr").all_inner_texts()
    assert {r.split()[0] for r in rows} == {"lr", "hidden"}
    bars = page.evaluate("Chart.getChart(document.getElementById('importance-chart'))"
                         ".data.datasets[0].data")
    assert len(bars) == 2 and all(0 <= b <= 1 for b in bars)
    assert "null" not in page.locator("#importance-body").inner_text()
    # a 2x2 grid without repeats: what main effects leave is lr x hidden and noise together
    doc = json.loads(urllib.request.urlopen(
        f"{server}/api/importance?metric=val_accuracy&where={urllib.request.quote(where)}"
    ).read())
    for x in doc["interactions"]:
        assert x["params"] == ["hidden", "lr"] and not x["replicated"]
        assert "hidden × lr" in page.locator("#interactions").inner_text()
    shot(page, "importance", tmp_path)


def test_api_errors_are_json_and_paging_is_server_side(server, populated):
    with urllib.request.urlopen(f"{server}/api/runs?limit=3&offset=3") as resp:
        doc = json.loads(resp.read())
    assert doc["total"] == 8 and len(doc["runs"]) == 3 and doc["offset"] == 3
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server}/api/runs/nope")
    assert e.value.code == 404 and "no run 'nope'" in json.loads(e.value.read())["error"]


def test_binds_loopback_and_other_hosts_need_a_token(populated):
    with pytest.raises(UsageError, match="--allow-remote and a token"):
        check_bind("0.0.0.0", allow_remote=False, token=None)
    with pytest.raises(UsageError):
        check_bind("0.0.0.0", allow_remote=True, token=None)
    with pytest.raises(UsageError, match="at least 16 characters"):
        check_bind("0.0.0.0", allow_remote=True, token=" ")
    check_bind("127.0.0.1", allow_remote=False, token=None)
    srv = make_server(populated["home"], "127.0.0.1", 0, token="s3cret-s3cret-s3cret")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}/api/meta")
        assert e.value.code == 401
        with urllib.request.urlopen(f"{url}/api/meta?token=s3cret-s3cret-s3cret") as resp:
            assert json.loads(resp.read())["count"] == 8
    finally:
        srv.shutdown()
        srv.server_close()
    p = repro("ui", "--host", "0.0.0.0")
    assert p.returncode == 2 and "--allow-remote" in p.stderr
