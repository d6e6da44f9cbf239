"""What the docker SDK brings, for real: credentials for a private registry from a Docker
config file (basic auth behind htpasswd), and the engine chosen by a Docker context."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from tests.helpers import repro
from tests.integration.conftest import add_spec
from tests.integration.test_reliability import SocketProxy
from tests.integration.test_replay import run_json, serve_registry, unique_image_project


def _docker_config(folder: Path, registry: str | None = None, user: str = "",
                   password: str = "", context: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc: dict = {}
    if registry:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        doc["auths"] = {registry: {"auth": token}}
    if context:
        doc["currentContext"] = context
    (folder / "config.json").write_text(json.dumps(doc))
    return folder


def test_a_private_registry_takes_credentials_from_the_docker_config(proj, tmp_path, engine):
    """Push and pull by digest against a registry behind htpasswd; the password comes only
    from $DOCKER_CONFIG/config.json (the hand-written client once sent no credentials)."""
    htpasswd = tmp_path / "htpasswd"
    out = subprocess.run(["htpasswd", "-Bbn", "ci", "s3cret-pass"], capture_output=True,
                         text=True, check=True).stdout
    htpasswd.write_text(out)
    unique_image_project(proj)
    p, built = run_json("image", "build", "images/unique", cwd=proj)
    assert p.returncode == 0, p.stderr
    with serve_registry(tmp_path, htpasswd) as registry:
        repo = f"{registry}/private/unique"
        anonymous = {"DOCKER_CONFIG": str(_docker_config(tmp_path / "anon"))}
        p = repro("image", "push", built["id"], repo, cwd=proj, env=anonymous)
        assert p.returncode == 5 and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) >= 1 and "push" in p.stderr
        creds = {"DOCKER_CONFIG": str(_docker_config(tmp_path / "ci", registry, "ci",
                                                     "s3cret-pass"))}
        p, pushed = run_json("image", "push", built["id"], repo, cwd=proj, env=creds)
        assert p.returncode == 0, p.stderr
        pinned = pushed["ref"]
        try:
            for ref in (pinned, f"{repo}:{built['id'][7:19]}", built["tag"],
                        built["tag"].rsplit(":", 1)[0] + ":latest", built["id"]):
                engine.remove_image(ref)
            assert engine.image(built["id"]) is None
            private = add_spec(proj, "private", f"""\
                image: {{ref: "{pinned}"}}
                command: [python3, /repro/code/hello.py]
                """)
            p = repro("launch", str(private.relative_to(proj)), "--json", cwd=proj,
                      env=anonymous)
            assert p.returncode != 0 and engine.image(built["id"]) is None
            p = repro("launch", str(private.relative_to(proj)), "--json", cwd=proj, env=creds)
            assert p.returncode == 0, p.stderr
            rec = json.loads(p.stdout)
            assert rec["resolved"]["image"]["digest"] == built["id"]
            assert "s3cret-pass" not in p.stdout + p.stderr
        finally:
            engine.remove_image(built["id"])


def test_the_engine_comes_from_the_docker_context_when_docker_host_is_unset(proj, tmp_path):
    """Docker Desktop and rootless engines are reached through the CLI's current context."""
    proxy = SocketProxy(tmp_path / "context.sock")
    config = _docker_config(tmp_path / "docker-config")
    env = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": ""}
    subprocess.run(["docker", "context", "create", "repro-test", "--docker",
                    f"host=unix://{tmp_path / 'context.sock'}"], check=True,
                   capture_output=True, env={"DOCKER_CONFIG": str(config), "PATH": "/usr/bin"})
    _docker_config(config, context="repro-test")
    p = repro("launch", "specs/hello.yaml", "--json", cwd=proj, env=env)
    assert p.returncode == 0, p.stderr
    assert proxy.connections > 0  # it went through the context's socket
    assert json.loads(p.stdout)["status"] == "succeeded"
    proxy.cut()
