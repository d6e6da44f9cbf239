"""Image recipes shipped inside repro, so a pip-installed repro builds images anywhere.

- ``debian``: Debian bookworm from the Debian archive with ``debootstrap`` (no registry):
  python3, its venv module and the CA certificates.
- ``python``: ``debian`` plus a virtual environment at /opt/venv with pip, first on PATH
  (PEP 668-safe: pip never touches Debian's Python), and the folders jobs mount into.

A recipe names one by bare name (``base: python`` in recipe.yaml, ``image: {build: python}``
in a spec) when no folder of that name is next to it.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent


def shipped(name: str) -> Path | None:
    """The folder of the shipped recipe ``name``, or None."""
    folder = SHIPPED_DIR / name
    return folder if name in names() else None


def names() -> list[str]:
    return sorted(p.name for p in SHIPPED_DIR.iterdir()
                  if p.is_dir() and not p.name.startswith(("_", ".")))
