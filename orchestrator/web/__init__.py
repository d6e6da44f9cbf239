"""`repro ui`: a local dashboard over the same store (standard-library HTTP server + a
static single-page app; Chart.js vendored from npm, nothing from a CDN).

Binds 127.0.0.1 by default. Any other address needs ``--allow-remote`` and a token (from
``REPRO_UI_TOKEN`` or ``--token-file``, never the command line, where `ps` shows it; at least
16 characters): every request must then carry it (``?token=`` once, kept in a cookie, or
``Authorization: Bearer``). Every request's ``Host`` (and ``Origin``, when sent) must name
this server: a loopback name, the bound address, this machine's name, an IP address, or a
name given with ``--allow-host``; a web page whose DNS name was rebound to 127.0.0.1 is
refused. Connections time out and their number is capped, so half-open ones cannot pile up.
All filtering, sorting and paging happens in the store (the same query language as
``repro runs --where``), so the browser only ever receives a page of runs.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import mimetypes
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from ..analysis.compare import compare
from ..analysis.importance import SAMPLE_RUNS, importance_of
from ..errors import ExitCode, ReproError, UsageError
from ..store import Store, open_store
from ..store.query import not_experiment, parse_sort, parse_where
from ..untrusted import HEX64
from ..views import flat_row, record_json

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PAGE_MAX = 1000
TOKEN_MIN = 16  # characters of a dashboard token
REQUEST_TIMEOUT_S = 15  # a connection idle this long is closed
MAX_CONNECTIONS = 64  # connections served at once; more get 503


def check_bind(host: str, allow_remote: bool, token: str | None) -> None:
    if token is not None and (len(token.strip()) < TOKEN_MIN or token != token.strip()):
        raise UsageError(f"the dashboard token must be at least {TOKEN_MIN} characters, "
                         "without surrounding spaces; make one with `openssl rand -hex 16`")
    if host in LOOPBACK:
        return
    if not allow_remote or not token:
        raise UsageError(f"--host {host} would expose the store beyond this machine; pass "
                         "--allow-remote and a token (REPRO_UI_TOKEN or --token-file; or keep "
                         "the default 127.0.0.1)")


def read_token(token_file: Path | None, env_token: str | None) -> str | None:
    """The token from --token-file (first line) or REPRO_UI_TOKEN; None when neither."""
    if token_file is None:
        return env_token or None
    try:
        text = token_file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--token-file {token_file}: cannot read it ({e})") from None
    return text.splitlines()[0] if text.strip() else ""


def allowed_host(header: str, bound: str, extra: set[str]) -> bool:
    """Whether a Host or Origin header names this server (see the module's docstring)."""
    name = header.strip().lower()
    if "://" in name:
        name = urlparse(name).netloc
    if name.startswith("["):  # [::1]:8765
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True  # a browser sends an address only when it was opened at that address
    except ValueError:
        pass
    names = {*LOOPBACK, bound.lower(), *(h.lower() for h in extra)}
    if bound not in LOOPBACK:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return name in names


def _page(q: dict[str, str]) -> tuple[int, int]:
    """(limit, offset) of a paged request, within bounds."""
    return (max(1, min(PAGE_MAX, int(q.get("limit", "50")))),
            max(0, int(q.get("offset", "0"))))


class Api:
    """The JSON endpoints; each request opens its own store connection and closes it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.local = threading.local()

    @property
    def store(self) -> Store:
        if getattr(self.local, "store", None) is None:
            self.local.store = open_store(self.home)
        return self.local.store

    @contextmanager
    def request(self) -> Iterator[None]:
        try:
            yield
        finally:
            store, self.local.store = getattr(self.local, "store", None), None
            if store is not None:
                store.close()

    def runs(self, q: dict[str, str]) -> dict[str, Any]:
        where = parse_where(q.get("where", ""))
        if q.get("experiments") != "1":  # a diagnosis' replays: shown when asked for
            where = where.and_(not_experiment())
        sort = parse_sort(q["sort"]) if q.get("sort") else None
        limit, offset = _page(q)
        records = self.store.runs.query(where, sort, limit, offset)
        tags = self.store.runs.tags_of([r.id for r in records])
        published = self.store.runs.published_of([r.id for r in records])
        authors = self.store.runs.authors([r.id for r in records])
        return {"total": self.store.runs.query_count(where), "offset": offset, "limit": limit,
                "runs": [flat_row(r, tags.get(r.id, {}), r.id in published,
                                  authors.get(r.id)) for r in records],
                "skipped": sorted(self.store.runs.damaged.values())}  # damaged rows

    def sweep_groups(self, q: dict[str, str]) -> dict[str, Any]:
        """The runs table grouped by sweep: one row per sweep with matching runs, and how
        many matching runs belong to no sweep."""
        where = parse_where(q.get("where", ""))
        limit, offset = _page(q)
        metric = q.get("metric") or None
        total, groups = self.store.runs.sweep_groups(where, metric, limit, offset)
        outside = where.and_(parse_where("sweep is null"))
        return {"total": total, "offset": offset, "limit": limit, "metric": metric,
                "groups": groups, "outside": self.store.runs.query_count(outside)}

    def run(self, run_id: str) -> dict[str, Any]:
        runs = self.store.runs
        record = runs.get(run_id)
        replays = runs.replays_of(record.id)
        doc = record_json(record, runs.steps(record.id), replays, runs.tags(record.id),
                          runs.notes(record.id), diagnoses=runs.diagnoses(record.id),
                          authors=runs.authors([record.id, *(r.id for r in replays)]))
        if record.replay_of:
            try:
                doc["original"] = {"id": runs.get(record.replay_of).id}
            except ReproError:
                doc["original"] = None
        return doc

    def compare(self, q: dict[str, str]) -> dict[str, Any]:
        ids = [i for i in q.get("ids", "").split(",") if i]
        if len(ids) < 2:
            raise UsageError("compare needs at least two run ids (?ids=a,b)")
        records = [self.store.runs.get(i) for i in ids]
        series = {r.id: self.store.runs.steps(r.id) for r in records}
        doc = compare(records, series, self.store.artifacts.local_path, diffoscope=False)
        doc["series"] = series
        return doc

    def importance(self, q: dict[str, str]) -> dict[str, Any]:
        if not q.get("metric"):
            raise UsageError("importance needs ?metric=NAME")
        samples, total = self.store.runs.importance_samples(
            parse_where(q.get("where", "")), q["metric"], SAMPLE_RUNS)
        return importance_of(q["metric"], samples, total)

    def meta(self) -> dict[str, Any]:
        runs = self.store.runs
        return {**runs.names(), "count": runs.count(), "home": str(self.home)}


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS at once (more are answered 503 at
    once), IPv4 or IPv6 by the address it binds."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(home: Path, host: str = "127.0.0.1", port: int = 8765,
                token: str | None = None,
                allow_hosts: set[str] | None = None) -> ThreadingHTTPServer:
    api = Api(home)
    extra_hosts = set(allow_hosts or ())

    class Handler(BaseHTTPRequestHandler):
        server_version = "repro-ui"
        timeout = REQUEST_TIMEOUT_S  # per socket operation: a silent client is dropped

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            origin = self.headers.get("Origin")
            if not allowed_host(self.headers.get("Host", ""), host, extra_hosts) or (
                    origin and origin != "null"
                    and not allowed_host(origin, host, extra_hosts)):
                return self._send(HTTPStatus.FORBIDDEN, {
                    "error": "this server answers only to its own names; open it at the "
                             "address `repro ui` printed (or pass --allow-host NAME)"})
            if token and not self._authorized(q):
                return self._send(HTTPStatus.UNAUTHORIZED, {"error": "token required"})
            try:
                with api.request():
                    self._route(url.path, q)
            except ReproError as e:
                status = (HTTPStatus.NOT_FOUND if e.exit_code == ExitCode.NOT_FOUND
                          else HTTPStatus.BAD_REQUEST)
                self._send(status, {"error": str(e)})
            except (ValueError, KeyError) as e:
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"bad request: {e}"})

        def _authorized(self, q: dict[str, str]) -> bool:
            given = q.get("token") or ""
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = auth[7:]
            for part in self.headers.get("Cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == "repro_token" and not given:
                    given = v
            return hmac.compare_digest(given.encode(), (token or "").encode())

        def _route(self, path: str, q: dict[str, str]) -> None:
            if path in ("/", "/index.html"):
                return self._file(STATIC / "index.html")
            if path == "/favicon.ico":
                self.send_response(HTTPStatus.NO_CONTENT)
                return self.end_headers()
            if path.startswith("/static/"):
                target = (STATIC / path[len("/static/"):]).resolve()
                if STATIC not in target.parents or not target.is_file():
                    return self._send(HTTPStatus.NOT_FOUND, {"error": "no such file"})
                return self._file(target)
            if path == "/api/runs":
                return self._send(HTTPStatus.OK, api.runs(q))
            if path == "/api/sweep-groups":
                return self._send(HTTPStatus.OK, api.sweep_groups(q))
            if path.startswith("/api/runs/"):
                return self._send(HTTPStatus.OK, api.run(path.rsplit("/", 1)[1]))
            if path == "/api/compare":
                return self._send(HTTPStatus.OK, api.compare(q))
            if path == "/api/importance":
                return self._send(HTTPStatus.OK, api.importance(q))
            if path == "/api/meta":
                return self._send(HTTPStatus.OK, api.meta())
            if path.startswith("/api/artifacts/"):
                return self._artifact(path.rsplit("/", 1)[1], q.get("name", "artifact"))
            return self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})

        def _artifact(self, sha: str, name: str) -> None:
            if not HEX64.match(sha) or not api.store.artifacts.has(sha):
                return self._send(HTTPStatus.NOT_FOUND, {"error": "no such artifact"})
            size = api.store.artifacts.size(sha)
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", name.rsplit("/", 1)[-1])[:100]
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Disposition", f'attachment; filename="{safe}"')
            self.end_headers()
            for chunk in api.store.artifacts.chunks(sha):
                self.wfile.write(chunk)

        def _file(self, path: Path) -> None:
            data = path.read_bytes()
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8"
                             if ctype.startswith(("text/", "application/javascript"))
                             else ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache")
            if token:
                self.send_header("Set-Cookie", f"repro_token={token}; HttpOnly; "
                                 "SameSite=Strict; Path=/")
            self.end_headers()
            self.wfile.write(data)

        def _send(self, status: HTTPStatus, doc: Any) -> None:
            data = json.dumps(doc, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return _Server((host, port), Handler)
