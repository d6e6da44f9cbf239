"""The Docker executor's pure parts: log stream decoding, GPU options, refusing remote
engines, build contexts. The engine itself is exercised by every integration test."""

from __future__ import annotations

import io
import tarfile

import pytest

from orchestrator.engine import connect
from orchestrator.engine.docker import gpu_options
from orchestrator.engine.docker_api import _check_sees_files
from orchestrator.engine.docker_images import context_tar
from orchestrator.engine.streams import demux
from orchestrator.errors import EngineUnavailable, UsageError


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


LINES = [f"step {i} loss {1 / (i + 1):.4f}\n".encode() for i in range(200)] + [b"", b"x" * 70000]


def wire() -> bytes:
    """What the engine sends on an attach: each line its own frame, stdout and stderr."""
    return b"".join(frame(1 + i % 2, line) for i, line in enumerate(LINES))


@pytest.mark.parametrize("cut", [1, 2, 5, 7, 37, 8192, 1 << 20])
def test_frames_decode_whatever_the_reads_cut(cut):
    raw = wire()
    pieces = (raw[i:i + cut] for i in range(0, len(raw), cut))
    assert b"".join(demux(pieces)) == b"".join(LINES)


def test_a_read_of_many_frames_is_handed_on_in_one_piece():
    out = list(demux([wire()]))
    assert len(out) == 1 and out[0] == b"".join(LINES)


def test_gpus_are_device_requests_under_docker_and_cdi_names_under_podman():
    assert gpu_options([], podman=False) == {}
    assert gpu_options(["GPU-1", "GPU-2"], podman=False) == {"device_requests": [
        {"driver": "", "count": 0, "device_ids": ["GPU-1", "GPU-2"],
         "capabilities": [["gpu"]]}]}
    assert gpu_options(["GPU-1"], podman=True) == {"devices": ["nvidia.com/gpu=GPU-1"]}


@pytest.mark.parametrize("where, ok", [
    ("unix:///var/run/docker.sock", True), ("unix:///run/user/1000/docker.sock", True),
    ("tcp://127.0.0.1:2375", True), ("tcp://localhost:2376", True),
    ("tcp://docker:2376", False), ("ssh://user@build-box", False),
    ("https://10.0.0.5:2376", False),
])
def test_an_engine_that_cannot_see_this_machines_files_is_refused(monkeypatch, where, ok):
    monkeypatch.delenv("REPRO_ENGINE_SHARES_FILES", raising=False)
    if ok:
        _check_sees_files(where)
        return
    with pytest.raises(EngineUnavailable, match="runs on another machine"):
        _check_sees_files(where)
    monkeypatch.setenv("REPRO_ENGINE_SHARES_FILES", "1")  # docker:dind sharing /builds
    _check_sees_files(where)


def test_an_unknown_engine_or_executor_lists_the_known_ones(monkeypatch):
    from orchestrator.scheduler import where

    monkeypatch.setenv("REPRO_ENGINE", "lsf")
    with pytest.raises(UsageError,
                       match="engine 'lsf' is not one of: charliecloud, docker, podman"):
        connect()
    monkeypatch.delenv("REPRO_ENGINE")
    monkeypatch.setenv("REPRO_EXECUTOR", "lsf")  # where a launch goes: where() refuses it
    with pytest.raises(UsageError, match="--executor 'lsf': use local .* or one of: slurm"):
        where()


def test_an_unreachable_engine_is_one_line_naming_the_socket(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(EngineUnavailable) as e:
        connect().version()
    assert f"{tmp_path}/nothing.sock" in str(e.value) and "\n" not in str(e.value)


def test_build_context_leaves_out_what_dockerignore_names(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("data\n*.tmp\n!keep.tmp\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"x" * 10)
    (tmp_path / "a.tmp").write_text("no")
    (tmp_path / "keep.tmp").write_text("yes")
    (tmp_path / "app.py").write_text("print(1)")
    with tarfile.open(fileobj=io.BytesIO(context_tar(tmp_path)[0])) as tar:
        names = sorted(tar.getnames())
    assert names == [".dockerignore", "Dockerfile", "app.py", "keep.tmp"]


def test_cpusets_parse_as_docker_writes_them():
    from orchestrator.engine.docker import parse_cpuset

    assert parse_cpuset("0,2-3") == {0, 2, 3}
    assert parse_cpuset("") == set() and parse_cpuset("x,5") == {5}


def test_a_failed_build_step_keeps_its_lines_whole_however_the_engine_cuts_them(tmp_path):
    """The engine sends a step's stderr in pieces (colour codes around each) that need not
    end lines; the error quotes whole lines."""
    from orchestrator.engine import BuildFailed
    from orchestrator.engine.docker import DockerEngine

    class Api:
        def build(self, **_kw):
            yield {"stream": "Step 1/2 : FROM x\n"}
            yield {"stream": " ---> abc\n"}
            yield {"stream": "Step 2/2 : RUN ls /nope\n"}
            yield {"stream": " ---> Running in 123\n"}
            yield {"stream": "\x1b[91mls: \x1b[0m"}
            yield {"stream": "\x1b[91mcannot access '/nope'\x1b[0m"}
            yield {"stream": "\x1b[91m: No such file or directory\n\x1b[0m"}
            yield {"error": "The command '/bin/sh -c ls /nope' returned a non-zero code: 2"}

    (tmp_path / "Dockerfile").write_text("FROM x\nRUN ls /nope\n")
    engine = DockerEngine()
    engine._api = Api()
    shown: list[str] = []
    with pytest.raises(BuildFailed) as e:
        engine.build(tmp_path, "t:1", {}, {}, shown.append)
    assert e.value.step == (2, "RUN ls /nope")
    assert e.value.tail == ["ls: cannot access '/nope': No such file or directory"]
    assert shown[-1] == "ls: cannot access '/nope': No such file or directory"


def test_a_scheduler_as_executor_still_resolves_with_this_machines_engine(monkeypatch):
    from orchestrator.engine.docker import DockerEngine
    from orchestrator.scheduler import where

    monkeypatch.setenv("REPRO_EXECUTOR", "slurm")
    assert isinstance(connect(), DockerEngine) and where().scheduler == "slurm"
    monkeypatch.setenv("REPRO_EXECUTOR", "podman")  # an engine: runs stay on this machine
    assert where().here and where("slurm").scheduler == "slurm"
    with pytest.raises(UsageError, match="use local"):
        where("lsf")
