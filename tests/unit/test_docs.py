"""RELIABILITY.md maps each fault to the tests that prove it: every test it names exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_reliability_md_names_exists():
    text = (ROOT / "RELIABILITY.md").read_text()
    refs = re.findall(r"`([\w/.]*)::(\w+)`", text)
    assert len(refs) > 20
    current: Path | None = None
    missing = []
    for file, name in refs:
        if file:
            hits = [ROOT / file] if "/" in file else list((ROOT / "tests").rglob(file))
            assert len(hits) == 1 and hits[0].is_file(), f"RELIABILITY.md names {file}"
            current = hits[0]
        assert current is not None, f"::{name} with no file before it"
        if not re.search(rf"^def {name}\(", current.read_text(), re.M):
            missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert missing == []
