"""The engine's HTTP client against a small server on a Unix socket that answers the way
the Docker engine does (chunked streams, JSON errors). The real engine is exercised by every
integration test; these pin the stream parsing and the error mapping."""

import io
import json
import socketserver
import struct
import tarfile
import threading
import time

import pytest

from orchestrator import dockerhttp as dh
from orchestrator.engine import Engine, WaitTimeout, _context_tar
from orchestrator.errors import EngineUnavailable, ImageError


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request_line = self.rfile.readline().decode()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.server.seen.append(request_line.split()[1])
        self.server.answer(self.wfile)


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path, answer) -> None:
        super().__init__(str(path), _Handler)
        self.seen: list[str] = []
        self.answer = answer
        threading.Thread(target=self.serve_forever, daemon=True).start()


def chunked(status: str, pieces: list[bytes]):
    def answer(w) -> None:
        w.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode())
        for piece in pieces:
            w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            w.flush()
        w.write(b"0\r\n\r\n")
    return answer


@pytest.fixture
def serve(tmp_path, monkeypatch):
    servers = []

    def start(answer) -> FakeEngine:
        sock = tmp_path / f"engine{len(servers)}.sock"
        monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
        servers.append(FakeEngine(sock, answer))
        return servers[-1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_progress_stream_objects_split_and_joined_across_chunks(serve):
    serve(chunked("200 OK", [b'{"stream":"Step 1"}{"str', b'eam":"Step 2"}\r\n',
                             b'{"aux":{"ID":"sha256:ab"}}']))
    resp = dh.Client().request("POST", "/build")
    assert list(dh.json_stream(resp)) == [{"stream": "Step 1"}, {"stream": "Step 2"},
                                          {"aux": {"ID": "sha256:ab"}}]


def test_a_stream_cut_inside_an_object_is_a_transport_error(serve):
    serve(chunked("200 OK", [b'{"status":"Pushing"}{"stat']))
    with pytest.raises(dh.TransportError, match="inside a JSON object"):
        list(dh.json_stream(dh.Client().request("POST", "/images/x/push")))


def test_log_frames_are_demultiplexed_whatever_the_chunking():
    def frame(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxI", stream, len(data)) + data

    raw = frame(1, b"out line\n") + frame(2, b"err line\n") + frame(1, b"")
    pieces = [raw[:3], raw[3:12], raw[12:30], raw[30:]]
    # one piece per chunk that completes frames: the first frame ends in the third chunk
    assert list(dh.frames(iter(pieces))) == [b"out line\n", b"err line\n"]
    assert list(dh.frames(iter([raw]))) == [b"out line\nerr line\n"]
    with pytest.raises(dh.TransportError, match="inside a frame"):
        list(dh.frames(iter([raw[:12]])))


def test_query_values_as_the_engine_reads_them(serve):
    fake = serve(chunked("200 OK", [b"{}"]))
    dh.Client().json("POST", dh.path("/images/{}/json", "localhost:5000/x@sha256:ab"),
                     params={"all": True, "rm": False, "skip": None,
                             "filters": {"label": ["a=b"]}, "changes": ["CMD x", "ENV A=1"]})
    path = fake.seen[0]
    assert path.startswith("/images/localhost:5000/x%40sha256:ab/json?")
    assert "all=1&rm=0&filters=%7B%22label%22%3A+%5B%22a%3Db%22%5D%7D" in path
    assert path.endswith("changes=CMD+x&changes=ENV+A%3D1") and "skip" not in path


def test_an_error_status_carries_the_engines_message(serve):
    def answer(w) -> None:
        body = json.dumps({"message": "No such image: nope:latest"}).encode()
        w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    serve(answer)
    with pytest.raises(dh.APIError) as e:
        dh.Client().json("GET", "/images/nope/json")
    assert e.value.status == 404 and e.value.message == "No such image: nope:latest"
    engine = Engine()
    assert engine.image("nope") is None  # absent, not an error
    with pytest.raises(ImageError, match="No such image: nope:latest"):
        engine.save("nope").__next__()
    engine.remove("gone")  # removing what is already gone is fine


def test_an_unreachable_engine_is_one_line_naming_the_socket(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    with pytest.raises(EngineUnavailable) as e:
        Engine().version()
    assert f"{tmp_path}/absent.sock" in str(e.value) and "scripts/ensure-docker" in str(e.value)


def test_tls_and_unknown_hosts_are_refused_with_what_to_do(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    with pytest.raises(EngineUnavailable, match="with TLS is not supported"):
        Engine().version()
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@host")
    with pytest.raises(EngineUnavailable, match="is not supported"):
        Engine().version()


def test_a_wait_past_its_deadline_is_a_timeout_not_a_lost_engine(serve):
    serve(lambda w: time.sleep(5))  # the engine holds a wait open until the job exits
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout):
        Engine().wait("c1", timeout=0.3)
    assert time.monotonic() - t0 < 3


def test_build_context_leaves_out_what_dockerignore_names(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("# big files\ndata\n*.ckpt\n!keep.ckpt\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"x")
    for name in ("a.ckpt", "keep.ckpt", "requirements.lock"):
        (tmp_path / name).write_text(name)
    with tarfile.open(fileobj=io.BytesIO(_context_tar(tmp_path))) as tar:
        names = sorted(tar.getnames())
    assert names == [".dockerignore", "Dockerfile", "keep.ckpt", "requirements.lock"]


def test_a_tcp_engine_without_tls_is_spoken_to_the_same_way(monkeypatch):
    class TCPEngine(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True

    srv = TCPEngine(("127.0.0.1", 0), _Handler)
    srv.seen, srv.answer = [], chunked("200 OK", [b'{"Version": "27.0.1", "ApiVersion":',
                                                  b' "1.46"}'])
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{srv.server_address[1]}")
        assert Engine().version()["version"] == "27.0.1" and srv.seen == ["/version"]
    finally:
        srv.shutdown()
        srv.server_close()


class Pieces:
    """A socket file that returns the given pieces, one per read1."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    def read1(self, n: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def test_chunked_bodies_decode_whatever_the_reads_cut():
    import random

    rng = random.Random(7)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 9, 300, 4000])))
                for _ in range(40)]
    wire = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";ext=1" if i % 7 == 0 else b"", p)
                    for i, p in enumerate(payloads)) + b"0\r\nX-Trailer: t\r\n\r\n"
    for cut in range(1, len(wire), 37):  # one cut anywhere: inside a size, a CRLF, a payload
        got = b"".join(dh._dechunked(Pieces([wire[:cut], wire[cut:]]), 1 << 20))
        assert got == b"".join(payloads), cut
    bytewise = b"".join(dh._dechunked(Pieces([wire[i:i + 1] for i in range(len(wire))]), 1))
    assert bytewise == b"".join(payloads)
    with pytest.raises(dh.TransportError, match="ended inside a chunk"):
        b"".join(dh._dechunked(Pieces([wire[:500]]), 1 << 20))
    with pytest.raises(dh.TransportError, match="bad chunk size"):
        b"".join(dh._dechunked(Pieces([b"zz\r\n"]), 1 << 20))
