"""The image index of ``RunStore``: each image's archive in the artifact store, which
image a recipe was built into (each member's own), and where images were pushed."""

from __future__ import annotations

from ..record import utc_now
from .rows import SqlRows, theirs_stands


class ImageRows(SqlRows):
    def image_archive(self, image_id: str) -> tuple[str, int] | None:
        row = self.db.execute("SELECT archive_sha256, size FROM images WHERE id = ?",
                              (image_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def add_image_archive_if_new(self, image_id: str, sha256: str, size: int) -> None:
        """Note an archive for an image that has none (a bundle never replaces one)."""
        with self.atomic() as db:
            db.execute("INSERT INTO images VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       (image_id, sha256, size, utc_now()))

    def add_image_archive(self, image_id: str, sha256: str, size: int) -> None:
        """Note (or renew) an image's archive; another member's row stands as it is."""
        with theirs_stands():
            with self.atomic() as db:
                db.execute("INSERT INTO images VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
                           "SET archive_sha256 = excluded.archive_sha256, size = excluded.size, "
                           "archived_at = excluded.archived_at",
                           (image_id, sha256, size, utc_now()))

    def recipe_image(self, recipe_digest: str) -> str | None:
        """The image this member built the recipe into (on PostgreSQL a member sees only its
        own rows: another member's image is taken only by the digest a run records)."""
        row = self.db.execute("SELECT image_id FROM recipe_images WHERE recipe_digest = ? "
                              "ORDER BY built_at DESC LIMIT 1", (recipe_digest,)).fetchone()
        return str(row[0]) if row else None

    def add_recipe_image(self, recipe_digest: str, image_id: str) -> None:
        with self.atomic() as db:
            db.execute("INSERT INTO recipe_images (recipe_digest, image_id, built_at) VALUES "
                       "(?, ?, ?) ON CONFLICT (recipe_digest, created_by) DO UPDATE SET "
                       "image_id = excluded.image_id, built_at = excluded.built_at",
                       (recipe_digest, image_id, utc_now()))

    def add_push(self, image_id: str, repository: str, digest: str) -> None:
        """Note a push; another member's row for the same repository stands as it is."""
        with theirs_stands():
            with self.atomic() as db:
                db.execute("INSERT INTO image_pushes VALUES (?, ?, ?, ?) ON CONFLICT (image_id, "
                           "repository) DO UPDATE SET digest = excluded.digest, "
                           "pushed_at = excluded.pushed_at",
                           (image_id, repository, digest, utc_now()))

    def pushes(self, image_id: str) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT repository, digest FROM image_pushes WHERE "
                                    "image_id = ? ORDER BY pushed_at DESC, repository",
                                    (image_id,)))
