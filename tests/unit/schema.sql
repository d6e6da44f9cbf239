CREATE TABLE diagnoses (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            user_name TEXT,
            doc TEXT NOT NULL
        );
CREATE TABLE image_pushes (
            image_id TEXT NOT NULL,
            repository TEXT NOT NULL,
            digest TEXT NOT NULL,
            pushed_at TEXT NOT NULL,
            PRIMARY KEY (image_id, repository)
        );
CREATE TABLE images (
            id TEXT PRIMARY KEY,
            archive_sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            archived_at TEXT NOT NULL
        );
CREATE TABLE metric_steps (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            PRIMARY KEY (run_id, name, step)
        );
CREATE TABLE published (
            run_id TEXT PRIMARY KEY REFERENCES runs (id),
            metric TEXT,
            value REAL,
            cited_by TEXT NOT NULL,
            cited_at TEXT NOT NULL
        );
CREATE TABLE "recipe_images" (
            recipe_digest TEXT NOT NULL,
            image_id TEXT NOT NULL,
            built_at TEXT NOT NULL,
            created_by TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (recipe_digest, created_by)
        ) WITHOUT ROWID;
CREATE TABLE run_imports (
            run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            imported_at TEXT NOT NULL,
            absent TEXT NOT NULL
        ) WITHOUT ROWID
    ;
CREATE TABLE run_metrics (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value REAL,
            PRIMARY KEY (run_id, name)
        ) WITHOUT ROWID;
CREATE TABLE run_notes (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            text TEXT NOT NULL
        );
CREATE TABLE run_params (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value_num REAL,
            value_text TEXT,
            PRIMARY KEY (run_id, name)
        ) WITHOUT ROWID;
CREATE TABLE "run_tags" (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_by TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (run_id, key, created_by)
        ) WITHOUT ROWID;
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
        , sweep_id TEXT, user_name TEXT, host TEXT, diagnosis_of TEXT);
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);
CREATE TABLE sweeps (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            spec_path TEXT,
            plan TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
CREATE INDEX diagnoses_run ON diagnoses (run_id, created_at)
    ;
CREATE INDEX run_metrics_value ON run_metrics (name, value);
CREATE INDEX run_notes_run ON run_notes (run_id, created_at);
CREATE INDEX run_params_num ON run_params (name, value_num);
CREATE INDEX run_params_text ON run_params (name, value_text);
CREATE INDEX run_tags_value ON run_tags (key, value)
    ;
CREATE INDEX runs_created_at ON runs (created_at);
CREATE INDEX runs_diagnosis_of ON runs (diagnosis_of);
CREATE INDEX runs_duration ON runs (duration_s);
CREATE INDEX runs_name ON runs (name, created_at);
CREATE INDEX runs_replay_of ON runs (replay_of);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_sweep ON runs (sweep_id);
CREATE INDEX runs_user ON runs (user_name, created_at)
    ;
