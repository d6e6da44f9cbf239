"""The Docker engine (and podman's Docker-compatible API) through the docker SDK.

The only module that talks to a container engine. docker-py brings what a hand-written
client would have to redo: Docker contexts (Docker Desktop, rootless), credentials from
``~/.docker/config.json`` and credential helpers for private registries, TLS
(``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``) and API version negotiation. Two things it does
by default are turned off: it never injects the config file's proxy settings into containers
or builds (``use_config_proxy=False``: that would change the recorded environment silently),
and its errors never leave this module: ``docker.errors`` and ``requests`` exceptions become
one-line ``ReproError``s here, chained with ``from``.

Jobs see repro's files through bind mounts, so an engine that cannot see this machine's
files (``ssh://``, ``tcp://`` to another host) is refused with the reason, unless
REPRO_ENGINE_SHARES_FILES=1 says it does (docker:dind sharing the build folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import EngineUnavailable, ImageError

if TYPE_CHECKING:
    import docker


DEFAULT_HOST = "unix:///var/run/docker.sock"
PODMAN_HOST = "unix:///run/podman/podman.sock"
LOOPBACK = ("localhost", "127.0.0.1", "::1")


class DockerAPI:
    """One engine endpoint (Docker, or podman's socket): the connection, its errors as
    ReproErrors, and the engine's facts. ``DockerImages`` and ``DockerEngine`` build on it."""

    name = "docker"

    def __init__(self, podman: bool = False) -> None:
        self.podman = podman
        if podman:
            self.name = "podman"
        self._api: docker.APIClient | None = None
        self._where = ""

    # -- connection and errors --------------------------------------------------------------

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            self._api = self._connect()
        return self._api

    def another(self) -> DockerAPI:
        """A client of the same engine with a connection of its own, for another thread
        (an image archived while the job runs)."""
        return type(self)(podman=self.podman)

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def _connect(self) -> docker.APIClient:
        import docker
        from docker.context import ContextAPI
        from docker.errors import DockerException
        from docker.utils import kwargs_from_env

        env = dict(os.environ)
        if self.podman and not env.get("DOCKER_HOST"):
            env["DOCKER_HOST"] = os.environ.get("REPRO_PODMAN_HOST", PODMAN_HOST)
        try:
            params = kwargs_from_env(environment=env)
            if "base_url" not in params:  # DOCKER_HOST unset: the CLI's current context
                for k, v in ContextAPI.kwargs_from_context(environment=env).items():
                    params.setdefault(k, v)
        except (DockerException, OSError, ValueError) as e:
            raise EngineUnavailable(f"cannot read the Docker configuration: {e}; check "
                                    "DOCKER_HOST, DOCKER_CONTEXT and ~/.docker") from e
        self._where = str(params.get("base_url") or DEFAULT_HOST)
        _check_sees_files(self._where)
        try:
            return docker.APIClient(version="auto", timeout=120, **params)
        except DockerException as e:
            raise EngineUnavailable(self._unreachable()) from e

    def _unreachable(self) -> str:
        return (f"cannot reach the {'podman' if self.podman else 'Docker'} engine at "
                f"{self._where or DEFAULT_HOST}; start it with `scripts/ensure-docker` (or "
                "`systemctl start docker`) and check you may use its socket")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, absent: str = "refused",
              **kwargs: Any) -> Any:
        """``fn``, its errors as ReproErrors. ``absent`` says what a 404 means: "refused"
        (an error like any other), "image" (ImageError) or "fine" (None)."""
        from docker.errors import APIError, DockerException
        from requests.exceptions import RequestException

        try:
            return fn(*args, **kwargs)
        except APIError as e:
            if e.status_code == 404 and absent == "fine":
                return None
            if e.status_code == 404 and absent == "image":
                raise ImageError(f"{what}: image not found ({_explain(e)})") from e
            raise EngineUnavailable(f"{what}: the engine refused: {_explain(e)}") from e
        except (DockerException, RequestException, OSError) as e:
            raise EngineUnavailable(f"{what}: {self._unreachable()}") from e

    def _stream(self, what: str, stream: Iterable[Any]) -> Iterator[Any]:
        """A streamed answer, its errors translated (an engine lost mid-stream)."""
        from docker.errors import APIError, DockerException
        from requests.exceptions import RequestException

        try:
            yield from stream
        except APIError as e:
            raise EngineUnavailable(f"{what}: the engine refused: {_explain(e)}") from e
        except (DockerException, RequestException, OSError) as e:
            raise EngineUnavailable(f"{what}: lost the engine at {self._where} ({e})") from e

    def _progress(self, what: str, stream: Iterable[dict[str, Any]]) -> Iterator[dict]:
        for chunk in self._stream(what, stream):
            if isinstance(chunk, dict) and chunk.get("error"):
                raise ImageError(f"{what}: {str(chunk['error']).strip()}")
            yield chunk


def _check_sees_files(where: str) -> None:
    """Refuse an engine that cannot bind-mount this machine's files (see the docstring)."""
    url = urlparse(where if "://" in where else f"unix://{where}")
    if url.scheme in ("unix", "http+unix", "npipe", "http+docker"):
        return
    host = (url.hostname or "").lower()
    if url.scheme in ("tcp", "http", "https") and host in LOOPBACK:
        return
    if os.environ.get("REPRO_ENGINE_SHARES_FILES") == "1":
        return
    raise EngineUnavailable(f"the engine at {where} runs on another machine, which cannot see "
                            "the code, inputs and outputs repro bind-mounts from here; use "
                            "a local engine (or its socket forwarded here), or set "
                            "REPRO_ENGINE_SHARES_FILES=1 if that engine shares this "
                            "machine's filesystem")


def _explain(e: Exception) -> str:
    text = str(getattr(e, "explanation", None) or e)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(e).__name__
