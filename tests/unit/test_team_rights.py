"""Members' rights in a team's PostgreSQL record store, enforced by the database itself
(row-level security and grants), with real roles on a real server: a member adds runs, tags
and notes; only its own unfinished runs change; nobody but the owner of the schema alters or
deletes a finished run."""

from __future__ import annotations

import pytest

from orchestrator.errors import StoreError
from orchestrator.record import RunStatus
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


def test_members_add_but_never_alter_or_delete_a_finished_run(team):
    alice, bob, admin = team["alice"], team["bob"], team["admin"]
    r = finished(alice, "a1")  # alice launched and finished it: every step allowed
    assert bob.get(r.id).metrics == {"acc": 0.9} and bob.steps(r.id) == {"acc": [(0, 0.9)]}
    r.metrics = {"acc": 0.99}
    for who in (bob, alice):  # not even alice alters it once it is finished
        with pytest.raises(StoreError):
            who.save(r)
        with pytest.raises(StoreError):
            who.add_steps(r.id, [("acc", 1, 0.99)])
        with pytest.raises(StoreError):
            who.remove(r.id)
    assert admin.get(r.id).metrics == {"acc": 0.9} and admin.steps(r.id) == {"acc": [(0, 0.9)]}

    bob.set_tags(r.id, {"reviewed": "bob"})  # tags and notes on anyone's run
    bob.add_note(r.id, "reproduced on my machine")
    with pytest.raises(StoreError):
        alice.set_tags(r.id, {"reviewed": "alice"})  # bob's tag is bob's
    with pytest.raises(StoreError):
        alice.set_tags(r.id, {}, remove=["reviewed"])
    assert admin.tags(r.id) == {"reviewed": "bob"} and len(admin.notes(r.id)) == 1
    bob.set_tags(r.id, {}, remove=["reviewed"])
    assert alice.tags(r.id) == {}
    bob.add_diagnosis(r.id, {"run": r.id, "result": "reproduces", "user": "bob"})  # anyone's
    assert [d["result"] for d in alice.diagnoses(r.id)] == ["reproduces"]
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
