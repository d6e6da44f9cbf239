import hashlib

import pytest

from orchestrator.hashing import canonical_json, digest_of, sha256_file


def test_canonical_json_is_order_independent():
    a = {"b": 1, "a": [1.5, {"y": 2, "x": 1}], "c": "é"}
    b = {"c": "é", "a": [1.5, {"x": 1, "y": 2}], "b": 1}
    assert canonical_json(a) == canonical_json(b) == '{"a":[1.5,{"x":1,"y":2}],"b":1,"c":"é"}'
    assert digest_of(a) == digest_of(b)
    assert digest_of(a).startswith("sha256:") and len(digest_of(a)) == 71


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_digest_changes_with_content():
    assert digest_of({"lr": 0.1}) != digest_of({"lr": 0.10000001})


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 3_000_000)
    assert sha256_file(p) == (hashlib.sha256(b"x" * 3_000_000).hexdigest(), 3_000_000)
