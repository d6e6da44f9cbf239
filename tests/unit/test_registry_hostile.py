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
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import StoreError
from orchestrator.store import oci
from orchestrator.store.artifacts import ArtifactStore
from tests.unit.test_fuzz import FUZZ

GOOD = b"the artifact's bytes\n"
HEX = hashlib.sha256(GOOD).hexdigest()


class Hostile(BaseHTTPRequestHandler):
    mode = "good"
    drawn: tuple[int, list[tuple[str, str]], bytes] = (200, [], b"")

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
        elif mode == "fuzz":  # whatever the fuzzer drew: status, headers, body
            status, headers, body = type(self).drawn
            self.close_connection = True
            try:
                self.send_response_only(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass
        elif mode == "slow":  # a trickle, then silence
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD[:3])
            self.wfile.flush()
            time.sleep(5)


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up on a hostile answer is the point, not news


@pytest.fixture(scope="module")
def registry():
    """One registry for the module; each test sets what it answers (``Hostile.mode``)."""
    server = _Quiet(("127.0.0.1", 0), Hostile)
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


@FUZZ
@given(status=st.sampled_from([200, 200, 200, 206, 301, 307, 401, 403, 404, 416, 500, 999]),
       length=st.sampled_from(["exact", "short", "long", "none", "garbage", "negative",
                               "huge", "twice"]),
       body=st.one_of(st.just(GOOD), st.binary(max_size=64), st.just(GOOD + b"more"),
                      st.just(GOOD[:-1])),
       extra=st.lists(st.tuples(st.sampled_from([
           "Location", "WWW-Authenticate", "Content-Encoding", "Transfer-Encoding",
           "Docker-Content-Digest", "Content-Type", "Content-Range"]),
           st.sampled_from(["http://127.0.0.1:9/x", "gzip", "chunked", "identity",
                            'Bearer realm="http://127.0.0.1:9/token",service="x"',
                            "sha256:" + HEX, "bytes 0-3/10", "\u00e9", ""])), max_size=3))
def test_any_registry_answer_is_the_artifact_or_a_store_error(registry, tmp_path_factory,
                                                               status, length, body, extra):
    """Issue 21: registry responses fuzzed where they are parsed. Whatever the registry
    answers to a download (status, sizes that lie, encodings, redirects, auth challenges
    pointing elsewhere), the cache holds the artifact only when its bytes hash right; any
    other answer is a StoreError naming the registry, never another exception, and leaves
    nothing behind."""
    sizes = {"exact": str(len(body)), "short": str(max(0, len(body) - 3)),
             "long": str(len(body) + 10), "garbage": "12abc", "negative": "-5",
             "huge": str(1 << 40), "twice": str(len(body))}
    headers = list(extra)
    if length in sizes:
        headers.append(("Content-Length", sizes[length]))
    if length == "twice":
        headers.append(("Content-Length", "1"))
    Hostile.mode, Hostile.drawn = "fuzz", (status, headers, body)
    s = store_at(registry, tmp_path_factory.mktemp("fuzz"))
    began = time.monotonic()
    try:
        s.fetch(HEX)
    except StoreError as e:
        assert "registry" in str(e) or "artifact" in str(e), e
        assert nothing_kept(s)
    else:
        assert s.cache.local_path(HEX).read_bytes() == GOOD
    assert time.monotonic() - began < 30
