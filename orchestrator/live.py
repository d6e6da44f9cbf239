"""The latest metrics of a running job, for the live line under its output.

Two sources, both hostile input: lines of the job's output matched by the spec's
``metrics_from_log`` regexes, and the ``metrics.jsonl`` the job's ``repro.log_metric`` writes
into its meta folder (polled; only new bytes, at most ``POLL_BYTES`` a time). Nothing here is
recorded: the record's metrics are ingested from the same sources when the job ends.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .outputs import scraped_name, scraped_step

Latest = dict[str, tuple[int | None, float]]  # name -> (step, value)
POLL_S = 0.5
WATCH_POLL_S = 0.1
POLL_BYTES = 1 << 20
MAX_NAMES = 64
MAX_POSITIONS = 10_000  # series whose steps the live line numbers
EVERY_S = 0.2  # at most this often to the screen


class LiveMetrics:
    """Steps are numbered as the record numbers them (``outputs.read_series`` and
    ``scrape_metrics``): a point's own step, else its position in its series. ``watch``, when
    given, sees every update at once (a prefix verify stops the job at its last step), and
    the metrics file is polled more often for it."""

    def __init__(self, scrapers: dict[str, str], jsonl: Path,
                 show: Callable[[Latest], None],
                 watch: Callable[[Latest], None] | None = None) -> None:
        self.scrapers = {name: re.compile(p, re.MULTILINE) for name, p in scrapers.items()}
        self.counts: dict[str, int] = {}
        self.positions: dict[str, int] = {}  # of the metrics file's series
        self.jsonl, self.show, self.watch = jsonl, show, watch
        self.poll_s = POLL_S if watch is None else WATCH_POLL_S
        self.latest: Latest = {}
        self.offset = 0
        self.shown_at = 0.0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def wrap(self, on_log: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """``on_log`` that also reads metrics from the lines it is given."""
        if not self.scrapers:
            return on_log

        def both(chunk: bytes) -> None:
            on_log(chunk)
            self.scrape(chunk.decode("utf-8", "replace"))

        return both

    def scrape(self, text: str) -> None:
        found: Latest = {}
        for name, rx in self.scrapers.items():
            for m in rx.finditer(text):
                value = _number(m.group("value"))
                series = scraped_name(name, m)
                if value is not None and series is not None:
                    step = scraped_step(m, self.counts.get(series, 0))
                    found[series] = (step, value)
                    self.counts[series] = step + 1
        if found:
            self._update(found)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._poll, name="live-metrics", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=2)

    def _poll(self) -> None:
        while not self.done.wait(self.poll_s):
            self._read_jsonl()

    def _read_jsonl(self) -> None:
        """New whole lines of the job's metrics.jsonl: a regular file only (never a link,
        FIFO or device: opened without following, without blocking, then checked)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.jsonl, flags)
        except OSError:
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            data = os.pread(fd, POLL_BYTES, self.offset)
        except OSError:
            return
        finally:
            os.close(fd)
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) == POLL_BYTES:
            self.offset += len(data)  # one endless line: skipped, never read again
        self.offset += cut
        found: Latest = {}
        for line in data[:cut].splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
                continue
            name, step, value = doc["name"], doc.get("step"), _number(doc.get("value"))
            if name not in self.positions and len(self.positions) >= MAX_POSITIONS:
                continue  # a job inventing names without end: the record still has them all
            if not isinstance(step, int) or isinstance(step, bool) or not -2**62 < step < 2**62:
                step = self.positions.get(name, 0)  # as read_series numbers it
            self.positions[name] = step + 1
            if value is not None:
                found[name[:64]] = (step, value)
        if found:
            self._update(found)

    def _update(self, found: Latest) -> None:
        with self.lock:
            for name, point in found.items():
                if name in self.latest or len(self.latest) < MAX_NAMES:
                    self.latest[name] = point
            now = time.monotonic()
            due = now - self.shown_at >= EVERY_S
            if due:
                self.shown_at = now
            latest = dict(self.latest)
        if self.watch is not None:
            self.watch(found)
        if due:
            self.show(latest)


def _number(raw: object) -> float | None:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
