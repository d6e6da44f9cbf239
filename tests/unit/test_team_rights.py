"""Members' rights in a team's PostgreSQL record store, enforced by the database itself
(row-level security and grants), with real roles on a real server: a member adds runs, tags
and notes; only its own unfinished runs change; nobody alters a finished run; a member removes
only its own runs that no other member replayed or cited, the owner of the schema any that
is not cited; one member's tag or damaged row blocks no one else."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from orchestrator.cite import _card, markdown
from orchestrator.errors import StoreError
from orchestrator.record import Diagnosis, RunStatus, Verdict, utc_now
from orchestrator.store.runs import RunStore
from tests.unit.test_store import record, rid


@pytest.fixture
def team(pg_server):
    """A database owned by an admin role (who sets the schema up), two members."""
    import uuid

    suffix = uuid.uuid4().hex[:8]
    names = {who: f"{who}_{suffix}" for who in ("admin", "alice", "bob")}
    for who, role in names.items():
        pg_server.create_role(role, f"{who}-pw")
    db = pg_server.create_db(f"team_{suffix}", owner=names["admin"])
    stores = {who: RunStore.postgresql(pg_server.url(role, f"{who}-pw", db))
              for who, role in names.items()}  # admin first: it creates the schema
    yield stores
    for s in stores.values():
        s.close()


def finished(store: RunStore, label: str) -> object:
    r = record(label)
    store.insert(r)
    r.status = RunStatus.RUNNING
    store.save(r, previous=RunStatus.PENDING)
    r.status, r.metrics, r.params = RunStatus.SUCCEEDED, {"acc": 0.9}, {"lr": 0.1}
    store.save(r, previous=RunStatus.RUNNING, steps=[("acc", 0, 0.9)])
    return r


def test_members_add_but_never_alter_a_finished_run(team):
    alice, bob, admin = team["alice"], team["bob"], team["admin"]
    r = finished(alice, "a1")  # alice launched and finished it: every step allowed
    assert bob.get(r.id).metrics == {"acc": 0.9} and bob.steps(r.id) == {"acc": [(0, 0.9)]}
    r.metrics = {"acc": 0.99}
    for who in (bob, alice):  # not even alice alters it once it is finished
        with pytest.raises(StoreError):
            who.save(r)
        with pytest.raises(StoreError):
            who.add_steps(r.id, [("acc", 1, 0.99)])
    with pytest.raises(StoreError, match="a member removes only its own runs"):
        bob.remove(r.id)
    assert admin.get(r.id).metrics == {"acc": 0.9} and admin.steps(r.id) == {"acc": [(0, 0.9)]}

    bob.set_tags(r.id, {"reviewed": "bob"})  # tags and notes on anyone's run
    bob.add_note(r.id, "reproduced on my machine")
    with pytest.raises(StoreError, match="another member's"):
        alice.set_tags(r.id, {}, remove=["reviewed"])  # bob's tag is bob's
    assert admin.tags(r.id) == {"reviewed": "bob"} and len(admin.notes(r.id)) == 1
    alice.set_tags(r.id, {"reviewed": "alice"})  # issue 21, M1: bob's tag does not block hers
    assert bob.tags(r.id) == {"reviewed": "alice"}  # the run's author's value is the one shown
    bob.set_tags(r.id, {}, remove=["reviewed"])  # his alone goes
    alice.set_tags(r.id, {}, remove=["reviewed"])
    assert bob.tags(r.id) == {}
    bob.add_diagnosis(r.id, Diagnosis(run=r.id, result="reproduces", user="bob",
                                      created_at=utc_now()))  # anyone's
    assert [d.result for d in alice.diagnoses(r.id)] == ["reproduces"]
    with pytest.raises(StoreError):  # but a diagnosis is never rewritten or removed
        bob.db.execute("UPDATE diagnoses SET doc = '{}'")
    with pytest.raises(StoreError):
        bob.db.execute("DELETE FROM diagnoses")

    pending = record("b2")
    bob.insert(pending)
    pending.status = RunStatus.RUNNING
    with pytest.raises(StoreError):  # alice cannot finish (or hijack) bob's run
        alice.save(pending, previous=RunStatus.PENDING)
    bob.save(pending, previous=RunStatus.PENDING)

    admin.remove(r.id)  # the schema's owner repairs and removes
    assert not bob.exists(r.id)


def test_a_member_imports_a_finished_run_with_its_series_in_one_go(team):
    r = record("c3")
    r.status, r.metrics = RunStatus.SUCCEEDED, {"loss": 0.1}
    team["bob"].import_run(r, [("loss", 0, 0.5), ("loss", 1, 0.1)], "bundle", [], None)
    assert team["alice"].steps(rid("c3")) == {"loss": [(0, 0.5), (1, 0.1)]}
    with pytest.raises(StoreError):
        team["bob"].add_steps(rid("c3"), [("loss", 2, 0.05)])  # a later transaction: no


def test_only_the_owner_sets_the_schema_up(pg_server):
    import uuid

    suffix = uuid.uuid4().hex[:8]
    pg_server.create_role(f"own_{suffix}", "own-pw")
    pg_server.create_role(f"mem_{suffix}", "mem-pw")
    db = pg_server.create_db(f"fresh_{suffix}", owner=f"own_{suffix}")
    with pytest.raises(StoreError) as e:
        RunStore.postgresql(pg_server.url(f"mem_{suffix}", "mem-pw", db))
    assert "only the role that owns it may do: run any repro command once as that role" \
        in str(e.value) and "mem-pw" not in str(e.value)
    RunStore.postgresql(pg_server.url(f"own_{suffix}", "own-pw", db)).close()
    RunStore.postgresql(pg_server.url(f"mem_{suffix}", "mem-pw", db)).close()  # now it opens


def test_every_shared_table_has_policies_and_a_recipe_is_each_members_own(team):
    """Issue 21, H2: one member repointed another's recipe at their own image (which the
    victim's next launch loaded and tagged as her recipe); images, image_pushes, sweeps and
    run_imports had the same open grants."""
    alice, bob, admin = team["alice"], team["bob"], team["admin"]
    recipe, hers, his = "sha256:" + "a" * 64, "sha256:" + "1" * 64, "sha256:" + "6" * 64
    alice.add_recipe_image(recipe, hers)
    assert bob.recipe_image(recipe) is None  # not bob's: he builds his own
    bob.add_recipe_image(recipe, his)  # his row, for him alone
    assert alice.recipe_image(recipe) == hers and bob.recipe_image(recipe) == his
    assert bob.db.execute("UPDATE recipe_images SET image_id = ? WHERE created_by <> "
                          "current_user", (his,)).rowcount == 0  # hers: not even seen
    assert bob.db.execute("DELETE FROM recipe_images WHERE created_by <> current_user"
                          ).rowcount == 0
    assert alice.recipe_image(recipe) == hers

    alice.add_image_archive(hers, "b" * 64, 10)
    alice.add_push(hers, "registry.team/runs", "sha256:" + "c" * 64)
    assert bob.image_archive(hers) == ("b" * 64, 10)  # read by all
    for sql in ("UPDATE images SET archive_sha256 = 'e' WHERE id = ?",
                "UPDATE image_pushes SET repository = 'evil.example/x' WHERE image_id = ?"):
        assert bob.db.execute(sql, (hers,)).rowcount == 0
    bob.add_image_archive(hers, "d" * 64, 11)  # over her row: hers stands, his launch goes on
    bob.add_push(hers, "registry.team/runs", "sha256:" + "f" * 64)
    assert admin.image_archive(hers) == ("b" * 64, 10)
    assert alice.pushes(hers) == [("registry.team/runs", "sha256:" + "c" * 64)]

    alice.add_sweep("a" * 12, "grid", "/s.yaml", "{}")
    with pytest.raises(StoreError):
        bob.db.execute("UPDATE sweeps SET plan = 'x'")
    r = finished(alice, "h2")
    with pytest.raises(StoreError):  # an origin only for one's own run
        bob.db.execute("INSERT INTO run_imports VALUES (?, 'bundle:/x', 'now', '[]')", (r.id,))
    assert bob.origin(r.id) is None


def test_one_member_neither_blocks_nor_impersonates_another(team):
    """Issue 21, M1: identity is the database role. A forged replay "by ci@team" became the
    last verdict `repro cite` showed; a member's citation of another's run kept even the
    admin from removing it. Who wrote a row is what the store shows; only a run's author
    cites it; a member removes its own runs unless another member replayed them."""
    alice, bob, admin = team["alice"], team["bob"], team["admin"]
    r = finished(alice, "m1")
    forged = record("m1f")
    forged.user, forged.replay_of = "ci@team", r.id
    forged.verdict = Verdict(result="identical")
    bob.insert(forged)
    role = {n: s.db.execute("SELECT current_user").fetchone()[0] for n, s in team.items()}
    assert alice.authors([r.id, forged.id]) == {r.id: role["alice"], forged.id: role["bob"]}
    assert alice.get(forged.id).user == "ci@team"  # what its client said, shown beside
    c = _card(alice.get(r.id), SimpleNamespace(runs=alice),  # type: ignore[arg-type]
              {"cited_at": "now", "cited_by": role["alice"]}, None)
    assert c["last_verdict"]["by"] == role["bob"] and c["user"] == role["alice"]
    assert f"by {role['bob']} (its client said ci@team)" in markdown(c)
    with pytest.raises(StoreError, match="only a run's author cites it"):
        bob.publish(r.id, "acc", 0.9, "bob")
    with pytest.raises(StoreError, match="a member removes only its own runs no one else "
                                         "replayed"):
        alice.remove(r.id)  # bob's replay of it stands, and so does the run
    bob.remove(forged.id)  # his own run: his to remove
    alice.remove(r.id)  # hers, no one else's replay left: hers to remove
    assert not admin.exists(r.id)

    r2 = finished(alice, "m1b")
    alice.publish(r2.id, None, None, "alice@laptop")
    assert bob.published(r2.id)["cited_by"] == role["alice"]  # not what her client said
    with pytest.raises(StoreError, match="published"):
        admin.remove(r2.id)  # a citation is permanent, and only its author made it


def test_a_members_damaged_row_is_skipped_with_a_warning_and_its_author_removes_it(team):
    """Issue 21, M2: one member's malformed row broke `repro runs`, `fsck`, `show` and the
    dashboard for the whole team, and nobody but the admin could remove it. A row that
    carries another run's record (a member's row "being" alice's run) is damaged too."""
    alice, bob, admin = team["alice"], team["bob"], team["admin"]
    good = finished(alice, "d1")
    bad, stolen = rid("d2"), rid("d3")
    copy = alice.get(good.id).model_dump_json()
    for row_id, doc in ((bad, '{"schema_version": 1, "id": "x"}'), (stolen, copy)):
        bob.db.execute("INSERT INTO runs (id, name, status, spec_digest, created_at, record) "
                       "VALUES (?, 'evil', 'succeeded', 'x', '2099-01-01T00:00:00Z', ?)",
                       (row_id, doc))
    listed = alice.recent()
    assert [r.id for r in listed] == [good.id]
    assert set(alice.damaged) == {bad, stolen}
    assert "its author or the store's admin can remove it" in alice.damaged[bad]
    assert "damaged at id (it says" in alice.damaged[stolen]
    assert [r.id for r in alice.query()] == [good.id]
    with pytest.raises(StoreError, match="damaged"):
        alice.get(stolen)  # never shown as alice's run
    with pytest.raises(StoreError):
        alice.remove(bad)  # not hers
    bob.remove(bad)  # its author removes it
    admin.remove(stolen)  # and the admin any
    assert alice.recent() == listed and not admin.exists(bad)


def test_a_member_inserts_runs_in_bulk_as_inserts_the_policies_check(team):
    """PostgreSQL refuses COPY into a table under row-level security: a member's bulk insert
    goes as INSERTs (the owner's as COPY), and stays a member's."""
    alice, bob, admin = team["alice"], team["bob"], team["admin"]
    runs = [record(f"{i:016x}").model_copy(update={"params": {"lr": i / 10},
                                                    "metrics": {"acc": i / 20}})
            for i in range(1, 6)]
    assert alice.insert_many(runs[:3]) == 3  # INSERTs
    assert admin.insert_many(runs[3:]) == 2  # COPY
    assert bob.get(runs[2].id).params == {"lr": 0.3}
    assert bob.get(runs[4].id).metrics == {"acc": 0.25}
    with pytest.raises(StoreError, match="a member removes only its own runs"):
        bob.remove(runs[0].id)
    alice.remove(runs[0].id)  # hers
