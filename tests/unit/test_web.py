"""The dashboard's HTTP edge against a real server and a real (empty) store: names it answers
to, tokens, timeouts, connection caps, IPv6. Browser tests live in tests/integration."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from orchestrator.errors import UsageError
from orchestrator.web import check_bind, make_server, read_token

TOKEN = "0123456789abcdef0123"


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(host="127.0.0.1", **kw):
        srv = make_server(tmp_path / "home", host, 0, **kw)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def get(port, path="/api/meta", host="127.0.0.1", headers=None):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_dns_rebinding_is_refused_by_host_and_origin(serve):
    """M4: a page on evil.example whose name now resolves to 127.0.0.1 sends Host:
    evil.example; it must not read the store."""
    port = serve()
    assert get(port)[0] == 200
    assert get(port, headers={"Host": f"localhost:{port}"})[0] == 200
    status, body = get(port, headers={"Host": f"evil.example:{port}"})
    assert status == 403 and b"answers only to its own names" in body
    assert get(port, headers={"Origin": "http://evil.example"})[0] == 403
    assert get(port, headers={"Origin": f"http://127.0.0.1:{port}"})[0] == 200


def test_an_extra_host_name_can_be_allowed(serve):
    port = serve(allow_hosts={"repro.lab"})
    assert get(port, headers={"Host": f"repro.lab:{port}"})[0] == 200
    assert get(port, headers={"Host": f"other.lab:{port}"})[0] == 403


def test_ipv6_loopback_binds_and_serves(serve):
    port = serve("::1")
    assert get(port, host="::1")[0] == 200


def test_a_half_open_connection_is_dropped_after_the_timeout(serve, monkeypatch):
    monkeypatch.setattr("orchestrator.web.REQUEST_TIMEOUT_S", 1)
    port = serve()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/meta HTTP/1.1\r\n")  # ... and never the rest
    s.settimeout(10)
    started = time.monotonic()
    assert s.recv(100) == b""  # the server closed it
    assert time.monotonic() - started < 8
    s.close()


def test_connections_beyond_the_cap_get_503_and_the_server_lives(serve, monkeypatch):
    monkeypatch.setattr("orchestrator.web.MAX_CONNECTIONS", 3)
    port = serve()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", port))
    extra.settimeout(5)
    assert extra.recv(100).startswith(b"HTTP/1.1 503")
    for s in [*idle, extra]:
        s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # slots come back once those threads end
        if get(port)[0] == 200:
            break
        time.sleep(0.1)
    assert get(port)[0] == 200


def test_token_rules(tmp_path, serve):
    with pytest.raises(UsageError, match="at least 16 characters"):
        check_bind("127.0.0.1", False, "short")
    with pytest.raises(UsageError, match="at least 16 characters"):
        check_bind("0.0.0.0", True, " " * 20)
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    assert read_token(f, None) == TOKEN
    assert read_token(None, "from-env-0123456789") == "from-env-0123456789"
    port = serve(token=TOKEN)
    assert get(port)[0] == 401
    status, body = get(port, f"/api/meta?token={TOKEN}")
    assert status == 200 and json.loads(body)["count"] == 0


@pytest.mark.process
def test_repro_ui_never_prints_the_token_and_refuses_it_on_the_command_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "orchestrator", "ui", "--token", TOKEN],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "No such option" in p.stderr
    env = {"REPRO_HOME": str(tmp_path / "h"), "REPRO_UI_TOKEN": TOKEN, "PATH": "/usr/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "ui", "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    proc.terminate()
    proc.wait(timeout=10)
    assert "serving" in line and "?token=<your token>" in line and TOKEN not in line


def test_the_dashboard_serves_either_store_with_users_and_the_published_mark(serve, tmp_path,
                                                                              backend):
    """The runs API over SQLite and PostgreSQL alike: the user column filters, a cited run
    carries the published mark."""
    from orchestrator.store import open_store
    from tests.unit.test_store import record

    store = open_store(tmp_path / "home")
    mine, theirs = record("a"), record("b")
    mine.user, theirs.user = "alice@example.com", "bob"
    store.runs.insert(mine)
    store.runs.insert(theirs)
    store.runs.publish(theirs.id, None, None, "carol")
    store.close()
    port = serve()
    status, body = get(port, "/api/runs?where=" + "user%20%3D%20bob")
    assert status == 200, body
    doc = json.loads(body)
    assert [(r["id"], r["user"], r["published"]) for r in doc["runs"]] == [
        (theirs.id, "bob", True)]
    status, body = get(port, "/api/runs")
    assert {r["id"]: r["published"] for r in json.loads(body)["runs"]} == {
        mine.id: False, theirs.id: True}


def test_the_run_list_leaves_a_diagnosis_experiments_out_unless_asked(serve, tmp_path,
                                                                      backend):
    from orchestrator.store import open_store
    from tests.unit.test_store import record

    store = open_store(tmp_path / "home")
    orig, experiment = record("a"), record("b")
    experiment.replay_of = experiment.diagnosis_of = orig.id
    store.runs.insert(orig)
    store.runs.insert(experiment)
    store.close()
    port = serve()
    doc = json.loads(get(port, "/api/runs")[1])
    assert [r["id"] for r in doc["runs"]] == [orig.id] and doc["total"] == 1
    doc = json.loads(get(port, "/api/runs?experiments=1")[1])
    assert {r["id"]: r["diagnosis_of"] for r in doc["runs"]} == {orig.id: None,
                                                                 experiment.id: orig.id}
