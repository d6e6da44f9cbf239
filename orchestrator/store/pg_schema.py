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

PG_MIGRATIONS: list[tuple[int, str, str]] = [
    (8, "run-user-host", f"""
        ALTER TABLE runs ADD COLUMN user_name {C};
        ALTER TABLE runs ADD COLUMN host {C};
        CREATE INDEX runs_user ON runs (user_name, created_at)
    """),
]
