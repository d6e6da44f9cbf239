"""A small client for the Docker Engine HTTP API over its socket, on the standard library.

Why not docker-py: it brings requests and urllib3 and costs ~200 ms of imports on every
launch, more than everything else repro adds to ``docker run`` (BENCHMARKS.md). This module
knows HTTP and the engine's stream formats and nothing about runs; ``engine.py`` maps it to
what the runner needs.

Each request uses its own connection (a Unix socket connect costs microseconds), so the log
follower, the wait and a stop can run at once from different threads.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from .hashing import CHUNK

DEFAULT_HOST = "unix:///var/run/docker.sock"


class APIError(Exception):
    """The engine answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class TransportError(Exception):
    """The engine could not be reached, or the connection broke mid-answer."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def path(template: str, *parts: str) -> str:
    """``path("/images/{}/json", ref)`` with each part URL-quoted (an image reference keeps
    its ``/`` and ``:``; the engine's routes take them as they are)."""
    return template.format(*(quote(p, safe="/:") for p in parts))


def registry_auth() -> str:
    """The X-Registry-Auth header for a registry that needs no credentials (the engine
    refuses a push without one). Credentials are never sent or recorded by repro."""
    return base64.urlsafe_b64encode(b"{}").decode()


class Client:
    def __init__(self, timeout: float = 120) -> None:
        self.host = host()
        self.timeout = timeout
        if self.host.startswith("unix://"):
            self._unix: str | None = self.host[len("unix://"):]
        elif self.host.startswith(("tcp://", "http://")):
            if os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH"):
                raise TransportError(f"DOCKER_HOST={self.host} with TLS is not supported; "
                                     "use the engine's Unix socket (or an SSH tunnel to it)")
            self._unix = None
            self._netloc = self.host.split("://", 1)[1].rstrip("/")
        else:
            raise TransportError(f"DOCKER_HOST={self.host} is not supported; set it to "
                                 "unix://PATH or tcp://HOST:PORT without TLS (forward a "
                                 "remote engine's socket, e.g. `ssh -NL /tmp/d.sock:"
                                 "/var/run/docker.sock HOST`)")

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, timeout)
        return http.client.HTTPConnection(self._netloc, timeout=timeout)

    def request(self, method: str, url: str, params: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                timeout: float | None | str = "default") -> http.client.HTTPResponse:
        """Send one request; return the open response (status < 400) for the caller to read.
        Raises APIError for an error status, TransportError when the engine is unreachable.
        ``timeout=None`` waits forever (a long ``wait``); socket timeouts raise TimeoutError."""
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        if query:
            url += "?" + urlencode(query, doseq=True)  # a list: the key once per item
        # one request per connection: the socket goes away with the response
        hdrs = {"Connection": "close", **(headers or {})}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = self._connection(self.timeout if timeout == "default" else timeout)
        try:
            conn.request(method, url, body=body, headers=hdrs)
            resp = conn.getresponse()
        except TimeoutError:
            conn.close()
            raise
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise TransportError(f"{type(e).__name__}: {e}") from e
        if resp.status >= 400:
            try:
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                conn.close()
            raise APIError(resp.status, _message(raw))
        return resp

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        resp = self.request(method, url, **kwargs)
        data = read_all(resp)
        return json.loads(data) if data.strip() else None

    def call(self, method: str, url: str, **kwargs: Any) -> None:
        """A request whose answer carries nothing we need."""
        read_all(self.request(method, url, **kwargs))


def read_all(resp: http.client.HTTPResponse) -> bytes:
    try:
        return resp.read()
    except TimeoutError:
        raise
    except (OSError, http.client.HTTPException) as e:
        raise TransportError(f"{type(e).__name__}: {e}") from e
    finally:
        resp.close()


def chunks(resp: http.client.HTTPResponse, size: int = CHUNK) -> Iterator[bytes]:
    """The body, as it arrives. A chunked body is decoded here in bulk: the engine sends a
    log line as one HTTP chunk, and http.client's chunk-at-a-time reading costs ~10 us each
    (two seconds for a job that prints 200,000 lines)."""
    try:
        if resp.chunked and resp.fp is not None:
            yield from _dechunked(resp.fp, size)
        else:
            while data := resp.read1(size):
                yield data
    except (OSError, http.client.HTTPException) as e:
        raise TransportError(f"{type(e).__name__}: {e}") from e
    finally:
        resp.close()


def _dechunked(fp: Any, size: int) -> Iterator[bytes]:
    """Chunked transfer coding (RFC 9112 7.1) decoded from a buffered socket file; one
    piece per read, holding the payload of every chunk that read completes or continues."""
    buf, pos, left, state = b"", 0, 0, "size"
    while True:
        out = []
        while True:
            if state == "data":
                take = min(left, len(buf) - pos)
                if take:
                    out.append(buf[pos:pos + take])
                    pos, left = pos + take, left - take
                if left:
                    break
                state = "crlf"
            if state == "crlf":
                if len(buf) - pos < 2:
                    break
                pos, state = pos + 2, "size"
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line = buf[pos:nl].split(b";", 1)[0].strip()
            pos = nl + 1
            try:
                left = int(line, 16)
            except ValueError:
                raise TransportError(f"the engine sent a bad chunk size {line[:20]!r}") from None
            if left == 0:  # the last chunk (trailers, if any, are not needed)
                if out:
                    yield b"".join(out)
                return
            state = "data"
        if out:
            yield b"".join(out)
        buf, pos = buf[pos:], 0
        data = fp.read1(size)
        if not data:
            raise TransportError("the engine's answer ended inside a chunk")
        buf = buf + data if buf else data


def json_stream(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The engine's progress streams (build, pull, push, load): JSON objects one after
    another, not always one per chunk or per line."""
    decoder = json.JSONDecoder()
    buf = ""
    for data in chunks(resp, 65536):
        buf += data.decode("utf-8", "replace")
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                break  # an object cut in two: wait for the rest
            buf = buf[end:]
            if isinstance(obj, dict):
                yield obj
    if buf.strip():
        raise TransportError(f"the engine's answer ended inside a JSON object: {buf[:80]!r}")


def frames(data_chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The output in the multiplexed stdout/stderr stream of a container without a TTY (each
    frame: an 8-byte header (stream, 0, 0, 0, big-endian length), then the payload), one
    piece per chunk read: the payloads of every frame the chunk completes, joined. A chatty
    job sends thousands of one-line frames a chunk; its reader then writes once, not per line.
    """
    buf = b""
    for data in data_chunks:
        buf = buf + data if buf else data
        pos, out = 0, []
        while len(buf) - pos >= 8:
            (length,) = struct.unpack_from(">I", buf, pos + 4)
            if len(buf) - pos < 8 + length:
                break
            out.append(buf[pos + 8:pos + 8 + length])
            pos += 8 + length
        buf = buf[pos:]
        if any(out):
            yield b"".join(out)
    if buf:
        raise TransportError("the engine's log stream ended inside a frame")


def _query_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, dict):  # filters, buildargs, labels travel as JSON
        return json.dumps(v)
    if isinstance(v, list):
        return [str(x) for x in v]
    return str(v)


def _message(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text or "no message"
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return text
