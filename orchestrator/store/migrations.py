"""Named, ordered schema migrations. Append only: never edit one that has shipped."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "runs-and-metric-steps", """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            exit_code INTEGER,
            spec_digest TEXT NOT NULL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            duration_s REAL,
            replay_of TEXT,
            record TEXT NOT NULL
        );
        CREATE INDEX runs_created_at ON runs (created_at);
        CREATE INDEX runs_name ON runs (name, created_at);
        CREATE INDEX runs_status ON runs (status);
        CREATE TABLE metric_steps (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            PRIMARY KEY (run_id, name, step)
        );
        CREATE TABLE hash_cache (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            sha256 TEXT NOT NULL
        );
    """),
    (2, "image-archives-and-pushes", """
        CREATE TABLE images (
            id TEXT PRIMARY KEY,
            archive_sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            archived_at TEXT NOT NULL
        );
        CREATE TABLE image_pushes (
            image_id TEXT NOT NULL,
            repository TEXT NOT NULL,
            digest TEXT NOT NULL,
            pushed_at TEXT NOT NULL,
            PRIMARY KEY (image_id, repository)
        );
        CREATE INDEX runs_replay_of ON runs (replay_of);
    """),
    (3, "queryable-params-metrics-tags-notes-sweeps", """
        CREATE TABLE run_params (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value_num REAL,
            value_text TEXT,
            PRIMARY KEY (run_id, name)
        ) WITHOUT ROWID;
        CREATE INDEX run_params_num ON run_params (name, value_num);
        CREATE INDEX run_params_text ON run_params (name, value_text);
        CREATE TABLE run_metrics (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value REAL,
            PRIMARY KEY (run_id, name)
        ) WITHOUT ROWID;
        CREATE INDEX run_metrics_value ON run_metrics (name, value);
        CREATE TABLE run_tags (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (run_id, key)
        ) WITHOUT ROWID;
        CREATE INDEX run_tags_value ON run_tags (key, value);
        CREATE TABLE run_notes (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            text TEXT NOT NULL
        );
        CREATE INDEX run_notes_run ON run_notes (run_id, created_at);
        CREATE TABLE sweeps (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            spec_path TEXT,
            plan TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        ALTER TABLE runs ADD COLUMN sweep_id TEXT;
        CREATE INDEX runs_sweep ON runs (sweep_id);
        CREATE INDEX runs_duration ON runs (duration_s);
        INSERT INTO run_params
            SELECT runs.id, j.key,
                   CASE j.type WHEN 'integer' THEN j.value WHEN 'real' THEN j.value
                               WHEN 'true' THEN 1 WHEN 'false' THEN 0 END,
                   CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
                               ELSE CAST(j.value AS TEXT) END
            FROM runs, json_each(runs.record, '$.params') AS j;
        INSERT INTO run_metrics
            SELECT runs.id, j.key, j.value FROM runs, json_each(runs.record, '$.metrics') AS j
    """),
    (4, "run-owners", """
        CREATE TABLE run_owners (
            run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
            host TEXT NOT NULL,
            boot_id TEXT NOT NULL,
            pid INTEGER NOT NULL,
            pid_start TEXT NOT NULL
        ) WITHOUT ROWID
    """),
    (5, "run-imports", """
        CREATE TABLE run_imports (
            run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            imported_at TEXT NOT NULL,
            absent TEXT NOT NULL
        ) WITHOUT ROWID
    """),
    # run owners and the hash cache belong to one machine: they live in local.db now
    # (store/local.py copies them there before this runs)
    (6, "machine-local-state-out", """
        DROP TABLE IF EXISTS run_owners;
        DROP TABLE IF EXISTS hash_cache
    """),
    # which image a recipe digest was built into, by a member of this store (never taken
    # from an imported record: a bundle could claim any recipe): a launch anywhere reuses
    # that image, from the engine or the archive, instead of building a different one
    (7, "recipe-images", """
        CREATE TABLE recipe_images (
            recipe_digest TEXT PRIMARY KEY,
            image_id TEXT NOT NULL,
            built_at TEXT NOT NULL
        ) WITHOUT ROWID
    """),
    # who launched a run and from where, queryable (`--where "user = alice"`)
    (8, "run-user-host", """
        ALTER TABLE runs ADD COLUMN user_name TEXT;
        ALTER TABLE runs ADD COLUMN host TEXT;
        CREATE INDEX runs_user ON runs (user_name, created_at)
    """),
    # PostgreSQL only (pg_schema.py): members' rights enforced by the database. A SQLite
    # store has one writer, its owner: nothing to do here
    (9, "member-rights", "SELECT 1"),
    # `repro cite`: a result registered before it is shared; a published run is never removed
    (10, "published", """
        CREATE TABLE published (
            run_id TEXT PRIMARY KEY REFERENCES runs (id),
            metric TEXT,
            value REAL,
            cited_by TEXT NOT NULL,
            cited_at TEXT NOT NULL
        )
    """),
    # PostgreSQL only (pg_schema.py): covering value indexes and extended statistics for its
    # planner. SQLite's indexes already serve the plans RunStore.query_ids picks
    (11, "query-statistics", "SELECT 1"),
    # PostgreSQL only: members' rights also cover runs `queued` on a scheduler
    (12, "queued-runs", "SELECT 1"),
    # `repro diagnose`: why a run does not reproduce, stored with the run (a JSON document,
    # one per diagnosis; the run itself stays as it finished)
    (13, "diagnoses", """
        CREATE TABLE diagnoses (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            user_name TEXT,
            doc TEXT NOT NULL
        );
        CREATE INDEX diagnoses_run ON diagnoses (run_id, created_at)
    """),
    # which image a recipe was built into is each member's own (a member repointed another's
    # recipe at their own image): keyed by who built it too. A SQLite store has one writer
    # (created_by ''); PostgreSQL fills it with the role and lets each role see only its own
    # (pg_schema.py), and puts every other shared table under row-level policies
    (14, "member-tables", """
        CREATE TABLE recipe_images_14 (
            recipe_digest TEXT NOT NULL,
            image_id TEXT NOT NULL,
            built_at TEXT NOT NULL,
            created_by TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (recipe_digest, created_by)
        ) WITHOUT ROWID;
        INSERT INTO recipe_images_14 (recipe_digest, image_id, built_at)
            SELECT recipe_digest, image_id, built_at FROM recipe_images;
        DROP TABLE recipe_images;
        ALTER TABLE recipe_images_14 RENAME TO recipe_images
    """),
    # a tag is its member's (one member's tag blocked the run's author from setting the same
    # key): keyed by who set it too. One writer here (created_by ''); PostgreSQL fills it
    # with the role, lets a member remove its own runs (a damaged one included) that no
    # other member replayed or cited, and a run be cited only by its author
    (15, "member-scopes", """
        CREATE TABLE run_tags_15 (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_by TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (run_id, key, created_by)
        ) WITHOUT ROWID;
        INSERT INTO run_tags_15 (run_id, key, value) SELECT run_id, key, value FROM run_tags;
        DROP TABLE run_tags;
        ALTER TABLE run_tags_15 RENAME TO run_tags;
        CREATE INDEX run_tags_value ON run_tags (key, value)
    """),
    # a diagnosis' experiments are replays the user did not ask for: marked, so run lists
    # leave them out and they go with the run they diagnosed; those of earlier diagnoses
    # are found in the diagnoses' documents
    (16, "diagnosis-experiments", """
        ALTER TABLE runs ADD COLUMN diagnosis_of TEXT;
        CREATE INDEX runs_diagnosis_of ON runs (diagnosis_of);
        UPDATE runs SET diagnosis_of = (
            SELECT d.run_id FROM diagnoses d, json_each(d.doc, '$.runs') j
            WHERE json_extract(j.value, '$.run') = runs.id LIMIT 1)
        WHERE replay_of IS NOT NULL
    """),
]

LATEST = MIGRATIONS[-1][0]
