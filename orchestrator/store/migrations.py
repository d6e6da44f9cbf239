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
]

LATEST = MIGRATIONS[-1][0]
