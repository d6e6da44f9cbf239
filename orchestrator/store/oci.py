"""Artifacts in an OCI registry (``REPRO_ARTIFACTS=oci://HOST[:PORT]/REPO``), through oras-py.

Each artifact is a blob of REPO addressed by its sha256; each finished run is an OCI artifact
manifest (empty config, one layer per artifact it needs, ``org.repro.run`` annotation) tagged
with its run id, so the registry's garbage collection keeps every blob a run needs. Reads go
through a verified local cache under ``REPRO_HOME`` (``cache/artifacts``): a blob is
downloaded into it, hash-checked, and only then used; writes land in the cache first and are
uploaded unless the registry has the blob already.

Loopback registries (127.0.0.1, localhost) are spoken to over plain HTTP, as Docker does;
others over HTTPS with this machine's CA bundle. Credentials come from the URL
(``oci://USER:PASS@HOST/REPO``) or the Docker config (``docker login``).

A registry's answers are hostile input: every request has a timeout, and a download takes
at most the size the registry announced (and never more than REPRO_OUTPUT_LIMIT), within a
deadline that size sets, hashed as it streams; what fails any of it is never used.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote, urlparse

from .. import settings
from ..errors import StoreError, UsageError
from ..hashing import hex_of
from .artifacts import ArtifactStore, DigestMismatch, Put, Source

LAYER = "application/vnd.repro.artifact"
EMPTY = "application/vnd.oci.empty.v1+json"
CHUNK = 64 << 20  # bytes per PATCH of a chunked upload (and the memory it takes)
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
RUN = "application/vnd.repro.run.v1"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 15.0, 60.0  # each request; each read of a stream
DOWNLOAD_MIN_S, DOWNLOAD_MIN_RATE = 120.0, 1 << 20  # a download's deadline: this, or 1 MiB/s


class OciArtifactStore:
    remote = True

    def __init__(self, url: str, cache: ArtifactStore) -> None:
        import oras.provider

        parsed = urlparse(url)
        host, repo = parsed.hostname or "", parsed.path.strip("/")
        if not host or not repo:
            raise UsageError(f"REPRO_ARTIFACTS {_safe(url)}: give oci://HOST[:PORT]/REPOSITORY")
        self.hostname = f"{host}:{parsed.port}" if parsed.port else host
        self.where = f"oci://{self.hostname}/{repo}"
        self.cache, self.root = cache, cache.root
        self.tmp = cache.tmp
        from ..settings import ca_bundle

        ca = ca_bundle()
        self.registry = oras.provider.Registry(
            hostname=self.hostname, insecure=host in LOOPBACK,
            tls_verify=str(ca) if ca is not None else True)
        # oras-py sends every request without a timeout: a registry that stops answering
        # would hold repro forever (connect, and each read of a stream, are bounded)
        self.registry.session.request = functools.partial(
            self.registry.session.request, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        user, password = _credentials(parsed, self.hostname)
        if user:
            self.registry.auth.set_basic_auth(user, password)
        self.repo = repo
        self.image_repository = f"{self.hostname}/{repo}"  # where `repro push` puts images
        self.container = self.registry.get_container(f"{self.hostname}/{repo}")

    # -- the registry ---------------------------------------------------------------------------

    def _stream(self, r: Any, digest: str) -> Iterator[bytes]:
        """A response's body in chunks; a read that times out or breaks off says so."""
        import requests

        try:
            yield from r.iter_content(1 << 20)
        except requests.RequestException as e:
            raise StoreError(f"artifact registry {self.where}: download {digest[:19]}: "
                             f"{_first(e)}; not used") from None

    def _call(self, what: str, fn: Any) -> Any:
        import requests

        try:
            return fn()
        except requests.RequestException as e:
            raise StoreError(f"artifact registry {self.where}: {what}: {_first(e)}") from None
        except (ValueError, KeyError) as e:  # oras-py's own checks of a response
            raise StoreError(f"artifact registry {self.where}: {what}: {_first(e)}") from None

    def _head(self, hex_: str) -> int | None:
        """The blob's size in the registry, or None when it has none."""
        digest = f"sha256:{_hex(hex_)}"
        r = self._call(f"look up {digest[:19]}", lambda: self.registry.get_blob(
            self.container, digest, head=True))
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise StoreError(f"artifact registry {self.where}: look up {digest[:19]}: "
                             f"HTTP {r.status_code}")
        return int(r.headers.get("Content-Length", 0))

    def _upload(self, hex_: str, path: Path | None = None,
                on_bytes: Callable[[int], None] = lambda _: None) -> None:
        """Upload the blob (from the cache, or ``path``, a file that must hash to ``hex_``:
        the registry checks the digest and refuses other bytes) unless the registry has it.
        Large blobs go in chunks (oras-py's monolithic PUT reads a whole file into memory),
        each reported to ``on_bytes``."""
        hex_ = _hex(hex_)
        path = path or self.cache.local_path(hex_)
        size = path.stat().st_size
        layer = {"mediaType": LAYER, "digest": f"sha256:{hex_}", "size": size}
        if self._call("look up", lambda: self.registry.blob_exists(layer, self.container)):
            on_bytes(size)
            return
        if size <= CHUNK:
            r = self._call(f"upload sha256:{hex_[:12]}", lambda: self.registry.upload_blob(
                str(path), self.container, layer))
            on_bytes(size)
        else:
            r = self._call(f"upload sha256:{hex_[:12]}",
                           lambda: self._chunked(path, hex_, on_bytes))
        if r.status_code not in (200, 201, 202):
            raise StoreError(f"artifact registry {self.where}: upload sha256:{hex_[:12]}: "
                             f"HTTP {r.status_code} {r.text.strip()[:200]}")

    def _chunked(self, path: Path, hex_: str, on_bytes: Callable[[int], None]) -> Any:
        """The OCI distribution spec's chunked upload (POST, PATCH per chunk, PUT with the
        digest), through oras-py's session and auth; memory stays one chunk."""
        reg = self.registry
        r = reg.do_request(f"{reg.prefix}://{self.container.upload_blob_url()}", "POST",
                           headers={**reg.headers, "Content-Length": "0"})
        start = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                session = reg._get_location(r, self.container)
                if not session:
                    return r
                r = reg.do_request(session, "PATCH", data=chunk, headers={
                    **reg.headers, "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + len(chunk) - 1}",
                    "Content-Length": str(len(chunk))})
                if r.status_code not in (200, 201, 202):
                    return r
                start += len(chunk)
                on_bytes(len(chunk))
        session = reg._get_location(r, self.container)
        if not session:
            return r
        sep = "&" if "?" in session else "?"
        return reg.do_request(f"{session}{sep}digest=sha256:{hex_}", "PUT",
                              headers={**reg.headers, "Content-Length": "0"})

    def image_pushed(self, image_id: str, tag: str) -> str | None:
        """The repository digest under which the registry holds image ``image_id`` as
        ``tag``, if it does: the manifest's config must be that image (a tag alone proves
        nothing), so a push of it can be skipped."""
        import requests

        reg = self.registry
        url = f"{reg.prefix}://{self.hostname}/v2/{self.repo}/manifests/{tag}"
        accept = ("application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json")
        try:
            r = reg.do_request(url, "GET", headers={**reg.headers, "Accept": accept})
            if r.status_code != 200:
                return None
            config = (r.json().get("config") or {}).get("digest")
        except (requests.RequestException, ValueError, AttributeError):
            return None
        digest = r.headers.get("Docker-Content-Digest")
        return str(digest) if config == image_id and digest else None

    def upload(self, hex_: str, path: Path, on_bytes: Callable[[int], None]) -> None:
        """Put a file of this machine that hashes to ``hex_`` in the registry, without a
        copy in the cache (`repro push`)."""
        self._upload(hex_, path, on_bytes)

    def fetch(self, hex_: str, on_bytes: Callable[[int], None] = lambda _: None) -> None:
        """Make the local cache hold the artifact: downloaded, hash-checked, then kept."""
        hex_ = _hex(hex_)
        if self.cache.has(hex_):
            on_bytes(self.cache.size(hex_))
            return
        digest = f"sha256:{hex_}"
        r = self._call(f"download {digest[:19]}", lambda: self.registry.get_blob(
            self.container, digest, stream=True))
        if r.status_code == 404:
            raise StoreError(f"artifact {digest} is missing from {self.where}")
        if r.status_code != 200:
            raise StoreError(f"artifact registry {self.where}: download {digest[:19]}: "
                             f"HTTP {r.status_code}")

        # the registry is hostile input: at most the size it announced (and never over the
        # output limit), within a deadline the size sets; the hash decides the rest
        announced = r.headers.get("Content-Length", "")
        if not announced.isdigit() or int(announced) > settings.output_limit():
            r.close()
            raise StoreError(f"artifact registry {self.where}: download {digest[:19]}: it "
                             f"announced {announced or 'no'} size (at most "
                             f"{settings.output_limit()} bytes, REPRO_OUTPUT_LIMIT); not used")
        cap = int(announced)
        # a trickle never trips a read timeout: past the deadline the connection is closed
        # under the read that waits on it
        expired = threading.Event()

        def cut() -> None:
            expired.set()
            _shut(r)

        watchdog = threading.Timer(max(DOWNLOAD_MIN_S, cap / DOWNLOAD_MIN_RATE), cut)
        watchdog.daemon = True

        def counted() -> Iterator[bytes]:
            got = 0
            try:
                for chunk in self._stream(r, digest):
                    got += len(chunk)
                    if got > cap:
                        raise StoreError(f"artifact registry {self.where}: download "
                                         f"{digest[:19]}: it sent more than the {cap} bytes "
                                         "it announced; not used")
                    on_bytes(len(chunk))
                    yield chunk
            except (StoreError, OSError, AttributeError, ValueError):
                if expired.is_set():
                    raise StoreError(f"artifact registry {self.where}: download "
                                     f"{digest[:19]}: slower than {DOWNLOAD_MIN_RATE >> 10} "
                                     f"KiB/s ({got} of {cap} bytes in time); not used") from None
                raise
            if expired.is_set():
                raise StoreError(f"artifact registry {self.where}: download {digest[:19]}: "
                                 f"cut off at its deadline ({got} of {cap} bytes); not used")

        watchdog.start()

        with self.cache.staging() as stage:
            try:
                stream = cast(BinaryIO, _Stream(counted()))
                stage.put_stream(stream, hex_, f"blob {digest[:19]}")
            except DigestMismatch as e:
                raise StoreError(f"artifact {digest} from {self.where} is corrupt (its bytes "
                                 f"hash to {e.got[:16]}...): not used") from None
            finally:
                watchdog.cancel()
                r.close()

    def keep_run(self, run_id: str, needs: dict[str, int]) -> None:
        """Tag a manifest listing every artifact a run needs with its id: registry garbage
        collection keeps them all, and ``pull`` knows what to fetch."""
        if not self.cache.has(EMPTY_DIGEST):
            self.cache.put(b"{}")  # the OCI empty config: its sha256 is EMPTY_DIGEST
        self._upload(EMPTY_DIGEST)
        for hex_ in needs:
            if self._head(hex_) is None:
                self._upload(hex_)
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": RUN,
            "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2},
            "layers": [{"mediaType": LAYER, "digest": f"sha256:{h}", "size": size}
                       for h, size in sorted(needs.items())],
            "annotations": {"org.repro.run": run_id}}
        target = self.registry.get_container(f"{self.hostname}/{self.repo}:{run_id}")
        r = self._call(f"tag run {run_id}", lambda: self.registry.upload_manifest(
            json.loads(json.dumps(manifest)), target))
        if r.status_code not in (200, 201):
            raise StoreError(f"artifact registry {self.where}: tag run {run_id}: "
                             f"HTTP {r.status_code} {r.text.strip()[:300]}")

    # -- the ArtifactStore interface ------------------------------------------------------------

    def has(self, digest: str) -> bool:
        return self.cache.has(digest) or self._head(digest) is not None

    def size(self, digest: str) -> int:
        if self.cache.has(digest):
            return self.cache.size(digest)
        size = self._head(digest)
        if size is None:
            raise StoreError(f"artifact {digest} is missing from {self.where}")
        return size

    def local_path(self, digest: str) -> Path:
        self.fetch(digest)
        return self.cache.local_path(digest)

    def check(self, digest: str) -> str:
        """'missing' when the registry lacks it (it verifies digests on upload); a corrupt
        cached copy is 'corrupt' (fsck then removes it: the next read fetches it again)."""
        if self._head(digest) is None:
            return "missing"
        return self.cache.check(digest) if self.cache.has(digest) else "ok"

    def put(self, source: Source, *, limit: int | None = None, expect: str | None = None,
            name: str = "artifact") -> Put:
        put = self.cache.put(source, limit=limit, expect=expect, name=name)
        self._upload(put.sha256)
        return put

    @contextmanager
    def staging(self) -> Iterator[_OciStage]:
        with self.cache.staging() as stage:
            wrapped = _OciStage(stage)
            yield wrapped
        for hex_ in wrapped.digests:  # in the cache now: upload them
            self._upload(hex_)

    def stale_temp_files(self) -> list[Path]:
        return self.cache.stale_temp_files()

    def chunks(self, digest: str) -> Iterator[bytes]:
        self.fetch(digest)
        yield from self.cache.chunks(digest)

    def open(self, digest: str) -> BinaryIO:
        self.fetch(digest)
        return self.cache.open(digest)

    def copy_out(self, digest: str, dest: Path) -> None:
        self.fetch(digest)
        self.cache.copy_out(digest, dest)


class _OciStage:
    def __init__(self, stage: Any) -> None:
        self.stage = stage
        self.digests: list[str] = []

    def put_stream(self, stream: BinaryIO, expect: str, name: str, replace: bool = False) -> int:
        size = int(self.stage.put_stream(stream, expect, name, replace))
        self.digests.append(expect)
        return size


class _Stream:
    """A file-like view of an iterator of chunks (for Stage.put_stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks, self.buf = iter(chunks), b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buf += chunk
        out, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
        return out


def _credentials(parsed: Any, hostname: str) -> tuple[str | None, str | None]:
    if parsed.username:
        return unquote(parsed.username), unquote(parsed.password or "")
    try:
        from docker import auth

        found = auth.resolve_authconfig(auth.load_config(), hostname) or {}
    except Exception:  # no Docker config, or one the SDK cannot read: anonymous
        return None, None
    return found.get("username") or found.get("Username"), found.get("password") or found.get(
        "Password")


def _hex(digest: str) -> str:
    from ..untrusted import HEX64

    h = hex_of(digest)
    if not HEX64.match(h):
        raise StoreError(f"{digest[:80]!r} is not a sha256 digest")
    return h


def _shut(r: Any) -> None:
    """Shut a response's socket down: a read blocked on it in another thread returns (a
    close alone leaves it waiting). Reached through urllib3's file object, as docker-py's
    own log reader does."""
    import socket

    try:
        r.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):
        pass
    r.close()


def _first(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _safe(url: str) -> str:
    from .db import safe_url

    return safe_url(url)
