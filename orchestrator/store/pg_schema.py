"""The record store's schema on PostgreSQL.

PostgreSQL support starts at SQLite's migration 7, so a new PostgreSQL store is created in one
step (``BASELINE``) and recorded as migrations 1-7; migrations after 7 are written for both
databases (``PG_MIGRATIONS`` beside ``migrations.MIGRATIONS``, same numbers and names).

Differences from the SQLite schema, each for the same results from the same SQL:
- text that is compared or sorted is ``COLLATE "C"`` (byte order, as SQLite compares);
- ``REAL`` is ``DOUBLE PRECISION`` (SQLite's REAL is 8 bytes; PostgreSQL's is 4);
- ``runs.seq`` (an identity) orders runs by insertion where SQLite uses its ``rowid``.
"""

from __future__ import annotations

C = 'TEXT COLLATE "C"'

BASELINE = f"""
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
CREATE TABLE runs (
    id {C} PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    name {C} NOT NULL,
    status {C} NOT NULL,
    exit_code INTEGER,
    spec_digest TEXT NOT NULL,
    created_at {C} NOT NULL,
    started_at {C},
    finished_at {C},
    duration_s DOUBLE PRECISION,
    replay_of {C},
    record TEXT NOT NULL,
    sweep_id {C}
);
CREATE INDEX runs_created_at ON runs (created_at);
CREATE INDEX runs_name ON runs (name, created_at);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_replay_of ON runs (replay_of);
CREATE INDEX runs_sweep ON runs (sweep_id);
CREATE INDEX runs_duration ON runs (duration_s);
CREATE TABLE metric_steps (
    run_id {C} NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name {C} NOT NULL,
    step BIGINT NOT NULL,
    value DOUBLE PRECISION,
    PRIMARY KEY (run_id, name, step)
);
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    archive_sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    archived_at TEXT NOT NULL
);
CREATE TABLE image_pushes (
    image_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    pushed_at {C} NOT NULL,
    PRIMARY KEY (image_id, repository)
);
CREATE TABLE run_params (
    run_id {C} NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name {C} NOT NULL,
    value_num DOUBLE PRECISION,
    value_text {C},
    PRIMARY KEY (run_id, name)
);
CREATE INDEX run_params_num ON run_params (name, value_num);
CREATE INDEX run_params_text ON run_params (name, value_text);
CREATE TABLE run_metrics (
    run_id {C} NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name {C} NOT NULL,
    value DOUBLE PRECISION,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX run_metrics_value ON run_metrics (name, value);
CREATE TABLE run_tags (
    run_id {C} NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key {C} NOT NULL,
    value {C} NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_tags_value ON run_tags (key, value);
CREATE TABLE run_notes (
    run_id {C} NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    created_at {C} NOT NULL,
    text {C} NOT NULL
);
CREATE INDEX run_notes_run ON run_notes (run_id, created_at);
CREATE TABLE sweeps (
    id {C} PRIMARY KEY,
    name TEXT NOT NULL,
    spec_path TEXT,
    plan TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE run_imports (
    run_id {C} PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    absent TEXT NOT NULL
);
CREATE TABLE recipe_images (
    recipe_digest TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    built_at TEXT NOT NULL
)
"""

BASELINE_VERSION: list[tuple[int, str]] = [
    (1, "runs-and-metric-steps"), (2, "image-archives-and-pushes"),
    (3, "queryable-params-metrics-tags-notes-sweeps"), (4, "run-owners"), (5, "run-imports"),
    (6, "machine-local-state-out"), (7, "recipe-images")]

# A run's own rows (its params, metrics and steps) may be written by the member who wrote the
# run row in this same transaction (a new run, a finish, an import), or while the run is
# theirs and unfinished. xmin is the transaction that wrote a row version; compared modulo
# 2^32 with the current transaction's 64-bit id.
_OWN_RUN_9 = ("EXISTS (SELECT 1 FROM runs r WHERE r.id = run_id AND r.created_by = current_user "
            "AND (r.status IN ('pending', 'running') OR r.xmin::text::bigint = "
            "pg_current_xact_id()::text::bigint % 4294967296))")
_SIDE = "".join(f"""
        ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
        CREATE POLICY {t}_read ON {t} FOR SELECT USING (true);
        CREATE POLICY {t}_write ON {t} FOR ALL USING ({_OWN_RUN_9}) WITH CHECK ({_OWN_RUN_9});"""
                for t in ("run_params", "run_metrics", "metric_steps"))
# from migration 12: a run queued on a scheduler is unfinished too
_OWN_RUN = _OWN_RUN_9.replace("('pending', 'running')", "('pending', 'queued', 'running')")
_SIDE_12 = "".join(f"""
        DROP POLICY {t}_write ON {t};
        CREATE POLICY {t}_write ON {t} FOR ALL USING ({_OWN_RUN}) WITH CHECK ({_OWN_RUN});"""
                   for t in ("run_params", "run_metrics", "metric_steps"))

# from migration 14: a shared table read by all, whose rows say who added them
_SHARED_14 = "".join(f"""
        ALTER TABLE {t} ADD COLUMN created_by TEXT NOT NULL DEFAULT current_user;
        ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
        CREATE POLICY {t}_read ON {t} FOR SELECT USING (true);"""
                     for t in ("images", "image_pushes", "sweeps", "run_imports"))
_ADD_OWN_14 = "".join(f"""
        CREATE POLICY {t}_add ON {t} FOR INSERT WITH CHECK (created_by = current_user);"""
                      for t in ("images", "image_pushes"))

PG_MIGRATIONS: list[tuple[int, str, str]] = [
    (8, "run-user-host", f"""
        ALTER TABLE runs ADD COLUMN user_name {C};
        ALTER TABLE runs ADD COLUMN host {C};
        CREATE INDEX runs_user ON runs (user_name, created_at)
    """),
    # Members' rights, enforced by the database. The role that created the schema owns the
    # tables and is not bound by these policies (it can repair and remove); every other role
    # that may connect (CONNECT on the database) is a member: it reads everything, adds runs,
    # finishes only its own unfinished runs, adds tags and notes to any run and changes only
    # its own tags; it deletes nothing. A finished run is never altered by a member.
    (9, "member-rights", f"""
        ALTER TABLE runs ADD COLUMN created_by TEXT NOT NULL DEFAULT current_user;
        ALTER TABLE run_tags ADD COLUMN created_by TEXT NOT NULL DEFAULT current_user;
        ALTER TABLE run_notes ADD COLUMN created_by TEXT NOT NULL DEFAULT current_user;
        ALTER TABLE runs ENABLE ROW LEVEL SECURITY;
        CREATE POLICY runs_read ON runs FOR SELECT USING (true);
        CREATE POLICY runs_add ON runs FOR INSERT WITH CHECK (created_by = current_user);
        CREATE POLICY runs_finish ON runs FOR UPDATE
            USING (created_by = current_user AND status IN ('pending', 'running'))
            WITH CHECK (created_by = current_user);
        {_SIDE}
        ALTER TABLE run_tags ENABLE ROW LEVEL SECURITY;
        CREATE POLICY run_tags_read ON run_tags FOR SELECT USING (true);
        CREATE POLICY run_tags_add ON run_tags FOR INSERT WITH CHECK (created_by = current_user);
        CREATE POLICY run_tags_own ON run_tags FOR UPDATE USING (created_by = current_user)
            WITH CHECK (created_by = current_user);
        CREATE POLICY run_tags_drop ON run_tags FOR DELETE USING (created_by = current_user);
        ALTER TABLE run_notes ENABLE ROW LEVEL SECURITY;
        CREATE POLICY run_notes_read ON run_notes FOR SELECT USING (true);
        CREATE POLICY run_notes_add ON run_notes FOR INSERT
            WITH CHECK (created_by = current_user);
        GRANT SELECT, INSERT, UPDATE ON runs, run_params, run_metrics, metric_steps, run_tags,
            run_notes, sweeps, run_imports, images, image_pushes, recipe_images TO PUBLIC;
        GRANT DELETE ON run_params, run_metrics, run_tags TO PUBLIC;
        GRANT SELECT ON schema_migrations TO PUBLIC;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO PUBLIC
    """),
    # a published run is referenced here without ON DELETE CASCADE: even the schema's owner
    # must unpublish it (delete this row) before the run can be removed
    (10, "published", f"""
        CREATE TABLE published (
            run_id {C} PRIMARY KEY REFERENCES runs (id),
            metric {C},
            value DOUBLE PRECISION,
            cited_by TEXT NOT NULL,
            cited_at {C} NOT NULL,
            created_by TEXT NOT NULL DEFAULT current_user
        );
        ALTER TABLE published ENABLE ROW LEVEL SECURITY;
        CREATE POLICY published_read ON published FOR SELECT USING (true);
        CREATE POLICY published_add ON published FOR INSERT
            WITH CHECK (created_by = current_user);
        GRANT SELECT, INSERT ON published TO PUBLIC
    """),
    # The --where benchmark on 100,000 runs: value indexes that carry run_id answer a
    # condition from the index alone (no heap fetch per match, once autovacuum has set the
    # visibility map), and statistics on (name, value) pairs let the planner see that
    # 'adam' is only ever an optimizer (estimates were 10x off, and so were the plans)
    (11, "query-statistics", """
        CREATE INDEX run_params_num_run ON run_params (name, value_num) INCLUDE (run_id);
        CREATE INDEX run_params_text_run ON run_params (name, value_text) INCLUDE (run_id);
        CREATE INDEX run_metrics_value_run ON run_metrics (name, value) INCLUDE (run_id);
        DROP INDEX run_params_num;
        DROP INDEX run_params_text;
        DROP INDEX run_metrics_value;
        CREATE STATISTICS run_params_text_stats (mcv, dependencies) ON name, value_text
            FROM run_params;
        CREATE STATISTICS run_params_num_stats (mcv, dependencies) ON name, value_num
            FROM run_params;
        CREATE STATISTICS run_metrics_stats (dependencies) ON name, value FROM run_metrics
    """),
    # `repro launch --executor slurm`: a run waits `queued` for a node; its member may still
    # move it on (the node connects as the member who submitted it)
    (12, "queued-runs", f"""
        DROP POLICY runs_finish ON runs;
        CREATE POLICY runs_finish ON runs FOR UPDATE
            USING (created_by = current_user AND status IN ('pending', 'queued', 'running'))
            WITH CHECK (created_by = current_user);
        {_SIDE_12}
    """),
    # `repro diagnose`: any member may diagnose any run and read every diagnosis; none
    # changes or removes one (the schema's owner does, and a run's removal cascades)
    (13, "diagnoses", f"""
        CREATE TABLE diagnoses (
            run_id {C} NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            created_at {C} NOT NULL,
            user_name TEXT,
            doc TEXT NOT NULL,
            created_by TEXT NOT NULL DEFAULT current_user
        );
        CREATE INDEX diagnoses_run ON diagnoses (run_id, created_at);
        ALTER TABLE diagnoses ENABLE ROW LEVEL SECURITY;
        CREATE POLICY diagnoses_read ON diagnoses FOR SELECT USING (true);
        CREATE POLICY diagnoses_add ON diagnoses FOR INSERT
            WITH CHECK (created_by = current_user);
        GRANT SELECT, INSERT ON diagnoses TO PUBLIC
    """),
    # Every shared table under policies (a member repointed another's recipe at their own
    # image, which the victim's next launch loaded as hers). A recipe's image is each
    # member's own: a member sees and writes only its own rows (the schema's owner sees
    # all). Image archives, pushes, sweeps and import origins: read by all, added by anyone
    # as themselves, changed only by who added them; an origin only for one's own run.
    (14, "member-tables", f"""
        ALTER TABLE recipe_images ADD COLUMN created_by TEXT NOT NULL DEFAULT current_user;
        ALTER TABLE recipe_images DROP CONSTRAINT recipe_images_pkey;
        ALTER TABLE recipe_images ADD PRIMARY KEY (recipe_digest, created_by);
        ALTER TABLE recipe_images ENABLE ROW LEVEL SECURITY;
        CREATE POLICY recipe_images_own ON recipe_images FOR ALL
            USING (created_by = current_user) WITH CHECK (created_by = current_user);
        {_SHARED_14}
        {_ADD_OWN_14}
        CREATE POLICY images_own ON images FOR UPDATE USING (created_by = current_user)
            WITH CHECK (created_by = current_user);
        CREATE POLICY image_pushes_own ON image_pushes FOR UPDATE
            USING (created_by = current_user) WITH CHECK (created_by = current_user);
        CREATE POLICY sweeps_add ON sweeps FOR INSERT WITH CHECK (created_by = current_user);
        CREATE POLICY run_imports_add ON run_imports FOR INSERT
            WITH CHECK (created_by = current_user AND EXISTS (SELECT 1 FROM runs r
                        WHERE r.id = run_id AND r.created_by = current_user));
        REVOKE UPDATE ON sweeps, run_imports FROM PUBLIC;
        GRANT DELETE ON recipe_images TO PUBLIC
    """),
    # One member could block another: a tag set first kept the run's author from setting
    # that key, and a citation of someone else's run kept even the schema's owner from
    # removing it. A tag is keyed by who set it; only a run's author cites it. A member
    # removes its own runs (a damaged row included) that no other member replayed; a cited
    # run stays (published has no ON DELETE CASCADE). The cascade to a run's own rows is
    # referential integrity, which row-level security does not restrict.
    (15, "member-scopes", """
        ALTER TABLE run_tags DROP CONSTRAINT run_tags_pkey;
        ALTER TABLE run_tags ADD PRIMARY KEY (run_id, key, created_by);
        CREATE POLICY runs_remove ON runs FOR DELETE
            USING (created_by = current_user AND NOT EXISTS (SELECT 1 FROM runs r
                   WHERE r.replay_of = runs.id AND r.created_by <> current_user));
        GRANT DELETE ON runs TO PUBLIC;
        DROP POLICY published_add ON published;
        CREATE POLICY published_add ON published FOR INSERT
            WITH CHECK (created_by = current_user AND EXISTS (SELECT 1 FROM runs r
                        WHERE r.id = run_id AND r.created_by = current_user))
    """),
    (16, "diagnosis-experiments", f"""
        ALTER TABLE runs ADD COLUMN diagnosis_of {C};
        CREATE INDEX runs_diagnosis_of ON runs (diagnosis_of);
        UPDATE runs SET diagnosis_of = (
            SELECT d.run_id FROM diagnoses d,
                   jsonb_array_elements(d.doc::jsonb -> 'runs') j
            WHERE j ->> 'run' = runs.id LIMIT 1)
        WHERE replay_of IS NOT NULL
    """),
]
