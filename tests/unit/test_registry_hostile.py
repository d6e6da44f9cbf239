"""A hostile or broken registry behind REPRO_ARTIFACTS=oci:// (issue 21, M4): a download
takes at most the size the registry announced (never over REPRO_OUTPUT_LIMIT), within a
deadline, with a timeout on every read; nothing it sent is kept. A real HTTP server on
127.0.0.1 plays the registry, through oras-py as repro speaks to any registry."""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.errors import StoreError
from orchestrator.store import oci
from orchestrator.store.artifacts import ArtifactStore

GOOD = b"the artifact's bytes\n"
HEX = hashlib.sha256(GOOD).hexdigest()


class Hostile(BaseHTTPRequestHandler):
    mode = "good"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        mode = type(self).mode
        self.send_response(200)
        if mode == "good":
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD)
        elif mode == "huge":  # announces more than any output may be
            self.send_header("Content-Length", str(10 << 30))
            self.end_headers()
        elif mode == "unsized":  # no size, and then far more than the artifact
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(4):
                self.wfile.write(b"100000\r\n" + b"x" * 0x100000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif mode == "trickle":  # a byte at a time, never silent long enough to time out
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)
        elif mode == "slow":  # a trickle, then silence
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD[:3])
            self.wfile.flush()
            time.sleep(5)


@pytest.fixture
def registry():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def store_at(port: int, tmp_path: Path) -> oci.OciArtifactStore:
    return oci.OciArtifactStore(f"oci://127.0.0.1:{port}/team/runs",
                                ArtifactStore(tmp_path / "cache"))


def nothing_kept(s: oci.OciArtifactStore) -> bool:
    """No artifact, and no temp file of the download left behind."""
    left = list(s.cache.tmp.glob("*")) if s.cache.tmp.exists() else []
    return not s.cache.has(HEX) and left == []


def test_a_good_registry_is_read(registry, tmp_path):
    Hostile.mode = "good"
    s = store_at(registry, tmp_path)
    s.fetch(HEX)
    assert s.cache.local_path(HEX).read_bytes() == GOOD


@pytest.mark.parametrize("mode, problem", [
    ("huge", "announced 10737418240 size"),
    ("unsized", "announced no size"),
])
def test_a_registry_that_announces_too_much_or_nothing_is_refused_unread(
        registry, tmp_path, mode, problem, monkeypatch):
    monkeypatch.setenv("REPRO_OUTPUT_LIMIT", "1g")  # no artifact is larger than an output
    Hostile.mode = mode
    s = store_at(registry, tmp_path)
    with pytest.raises(StoreError, match=problem):
        s.fetch(HEX)
    assert nothing_kept(s)


def test_a_registry_that_stalls_is_given_up_on(registry, tmp_path, monkeypatch):
    Hostile.mode = "slow"
    monkeypatch.setattr(oci, "READ_TIMEOUT_S", 1.0)
    s = store_at(registry, tmp_path)
    began = time.monotonic()
    with pytest.raises(StoreError, match=r"registry oci://127.0.0.1:\d+/team/runs: download "
                       r"sha256:.*Read timed out.*not used"):
        s.fetch(HEX)
    assert time.monotonic() - began < 4  # its read timeout, not the registry's silence
    assert nothing_kept(s)


def test_a_registry_that_trickles_is_cut_off_at_its_deadline(registry, tmp_path, monkeypatch):
    Hostile.mode = "trickle"
    monkeypatch.setattr(oci, "DOWNLOAD_MIN_S", 1.0)
    s = store_at(registry, tmp_path)
    began = time.monotonic()
    with pytest.raises(StoreError, match=r"download sha256:\w+: (slower than 1024 KiB/s|cut off "
                                         r"at its deadline)"):
        s.fetch(HEX)
    assert time.monotonic() - began < 5  # 1,000 bytes at 20 a second would take 50 s
    assert nothing_kept(s)
