"""Terminal widgets that redraw while work goes on: the live line of a job's metrics under
its output, a writer that shows a foreign job's control characters as escapes, a sweep's
board and a transfer's bar. Static output is ``ui.py``'s."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from typing import Any

from .record import RunStatus
from .ui import T, fmt_num, plain_console, progress, tty_style
from .untrusted import printable


class LiveStatus:
    """On a terminal, a line under the job's output with its latest metrics, redrawn as they
    change and as output scrolls past; elsewhere (a pipe, a CI log) nothing."""

    def __init__(self, stream: Any = None, inert: bool = False) -> None:
        """``inert``: the job is someone else's (a run from elsewhere being replayed): on a
        terminal its control characters are shown as escapes, never obeyed."""
        import codecs

        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.inert = inert and self.enabled
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.text = ""
        self.lock = threading.Lock()

    def log(self, chunk: bytes) -> None:
        with self.lock:
            if self.enabled and self.text:
                self.stream.write("\r\x1b[2K")
            text = self.decoder.decode(chunk)
            self.stream.write(printable(text, lines=True) if self.inert else text)
            if self.enabled and self.text:
                self.stream.write(self.text)
            self.stream.flush()

    def metrics(self, latest: dict[str, tuple[int | None, float]]) -> None:
        parts = [f"{printable(name)} {value:.6g}" + (f" @{step}" if step is not None else "")
                 for name, (step, value) in sorted(latest.items())]
        width = shutil.get_terminal_size((100, 20)).columns - 1
        text = tty_style(("▸ " + "  ".join(parts))[:width], "2")
        with self.lock:
            self.text = text
            if self.enabled:
                self.stream.write("\r\x1b[2K" + text)
                self.stream.flush()

    def end(self) -> None:
        with self.lock:
            if self.enabled and self.text:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
            self.text = ""


def inert_writer(stream: Any = None) -> Callable[[bytes], None]:
    """A writer of a job's bytes to a terminal with its control characters (escape
    sequences, a title change, a cleared screen) shown as escapes; newlines and tabs kept.
    UTF-8 split across chunks is decoded whole; ``b""`` flushes what is left."""
    import codecs

    out = stream or sys.stdout
    decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(chunk: bytes) -> None:
        out.write(printable(decoder.decode(chunk, final=not chunk), lines=True))
        out.flush()

    return write


class SweepBoard:
    """Live progress of a sweep on stderr: a bar, and one line per finished point."""

    def __init__(self, total: int, metric: str | None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.metric = metric
        self.console = plain_console(stderr=True)
        self.progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[failed]} failed"),
                                 console=self.console, transient=False)
        self.task = self.progress.add_task("sweep", total=total, failed=0)
        self.failed = 0

    def __enter__(self) -> SweepBoard:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def line(self, text: str) -> None:
        self.console.print(text, style="dim")

    def done(self, point: Any) -> None:

        params = " ".join(f"{k}={fmt_num(v)}" for k, v in point.params.items())
        r = point.record
        if r is None or r.status != RunStatus.SUCCEEDED:
            self.failed += 1
            why = point.error or (r.reason if r else "") or (str(r.status) if r else "")
            self.console.print(T("✗ ", style="red") + T(f"{params}  ")
                               + T(f"{r.id if r else '-'} {why}", style="red"))
        else:
            value = r.metrics.get(self.metric) if self.metric else None
            shown = f"  {self.metric} {fmt_num(value)}" if value is not None else ""
            self.console.print(T("✓ ", style="green") + T(f"{params}  {r.id}{shown}"))
        self.progress.update(self.task, advance=1, failed=self.failed)


class TransferBar:
    """Bytes moved by `repro push`/`pull`: a bar with speed on a terminal; elsewhere (a CI
    log) one line per large artifact."""

    def __init__(self, verb: str, total: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.console = plain_console(stderr=True)
        self.bar = self.console.is_terminal and total > 0
        self.progress = Progress(TextColumn(verb), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=self.console, transient=True)
        self.task = self.progress.add_task(verb, total=total)

    def __enter__(self) -> TransferBar:
        if self.bar:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.progress.stop()

    def advance(self, n: int) -> None:
        if self.bar:
            self.progress.update(self.task, advance=n)

    def line(self, text: str) -> None:
        if self.bar:
            self.progress.console.print(text, style="dim")
        else:
            progress(text)
