"""The live line under a job's output: metrics read from its output and its metrics.jsonl as
the job runs (hostile input: never followed, never blocking), drawn only on a terminal."""

from __future__ import annotations

import io
import json
import os

from orchestrator.live import POLL_BYTES, LiveMetrics
from orchestrator.ui_live import LiveStatus


def test_printed_values_and_logged_metrics_both_reach_the_line(tmp_path):
    shown: list[dict] = []
    jsonl = tmp_path / "metrics.jsonl"
    live = LiveMetrics({"loss": r"loss=(?P<value>\S+)"}, jsonl, shown.append)
    live.shown_at = -1e9
    seen: list[bytes] = []
    on_log = live.wrap(seen.append)
    on_log(b"epoch 0 loss=0.5\nepoch 1 loss=nan\n")  # a non-number is not a value
    assert seen == [b"epoch 0 loss=0.5\nepoch 1 loss=nan\n"]
    assert shown[-1] == {"loss": (0, 0.5)}
    jsonl.write_text(json.dumps({"name": "acc", "value": 0.75, "step": 3}) + "\n"
                     + "not json\n" + json.dumps({"name": "acc", "value": "x"}) + "\n"
                     + '{"name": "acc", "value": 0.8')  # a line still being written
    live.shown_at = -1e9
    live._read_jsonl()
    assert shown[-1] == {"loss": (0, 0.5), "acc": (3, 0.75)}
    with open(jsonl, "a") as f:
        f.write(', "step": 4}\n')
    live.shown_at = -1e9
    live._read_jsonl()
    assert shown[-1]["acc"] == (4, 0.8)


def test_a_hostile_metrics_file_is_never_followed_or_waited_on(tmp_path):
    shown: list[dict] = []
    secret = tmp_path / "secret"
    secret.write_text(json.dumps({"name": "stolen", "value": 1}) + "\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(secret)
    LiveMetrics({}, link, shown.append)._read_jsonl()
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    LiveMetrics({}, fifo, shown.append)._read_jsonl()  # returns at once: not a regular file
    endless = tmp_path / "endless.jsonl"
    endless.write_bytes(b"x" * (POLL_BYTES + 10))
    live = LiveMetrics({}, endless, shown.append)
    live._read_jsonl()
    assert live.offset == POLL_BYTES and shown == []


def test_the_line_is_drawn_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        status = LiveStatus(stream)
        status.metrics({"loss": (2, 0.25), "bad\x1bname": (None, 1.0)})
        status.log(b"epoch 3\n")
        status.end()
    assert pipe.getvalue() == "epoch 3\n"
    out = tty.getvalue()
    assert "loss 0.25 @2" in out and "bad\\x1bname 1" in out and "\x1bname" not in out
    assert out.endswith("\r\x1b[2K") and "epoch 3\n" in out
