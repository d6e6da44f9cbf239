"""What a finished job left, into its record and the store: its outputs, environment facts,
metrics and logged params (``ingest``), and its output as it came (``LogSink``). Everything
here was written by the job, so it crosses a trust boundary: names are redacted, outputs
collected under the limits ``outputs.collect`` keeps, and a full disk makes the record say
what is short instead of losing the run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from . import capture, workdir
from .engine import CONTAINER_HOSTNAME
from .jobspec import MACHINE_ID, machine_id
from .outputs import collect, final_metrics, read_logged_params, read_series, scrape_metrics
from .record import ContainerFacts, FileRef, RunRecord, RunStatus
from .resolve import Redactor
from .runtime.repro_boot import LOCK_MISMATCH
from .store import Store


def ingest(record: RunRecord, store: Store, work: Path, log_path: Path,
           redactor: Redactor | None = None,
           image_facts: dict[str, Any] | None = None) -> list[tuple[str, int, float]]:
    """What a run left (outputs, environment, metrics, logged params, the live log) into its
    record and the artifact store. Returns the metric series, for the caller to store with
    the record. Used when a run ends and when recovery finishes an orphan. Secret values in
    names and logged params are redacted (``redactor``). ``image_facts``: the container's
    facts as repro captured them (else the job's own report is recorded, labelled so)."""
    r = record.resolved
    meta_dir, outputs_dir = work / "meta", workdir.folder(work, r.layout)
    facts = capture.container_facts(meta_dir, record.warnings, image_facts)
    facts["hostname"] = CONTAINER_HOSTNAME
    if (work / MACHINE_ID).exists():
        facts["machine_id"] = machine_id(r.seed)
    record.environment.container = ContainerFacts.model_validate(facts)
    if record.exit_code == LOCK_MISMATCH and facts["lock_problems"] and \
            record.status == RunStatus.FAILED:
        record.reason = "package lock mismatch: " + "; ".join(facts["lock_problems"])
    series = read_series(meta_dir, record.warnings)
    series += scrape_metrics(log_path, record.resolved.metrics_from_log, record.warnings)
    record.params = {**read_logged_params(meta_dir, record.resolved.params, record.warnings),
                     **record.resolved.params}
    untouched = workdir.Untouched(work) if r.layout == workdir.PROJECT else None
    found = collect(outputs_dir, r.outputs, store.artifacts, exclude=r.outputs_exclude,
                    untouched=untouched, ignore=[i.mount for i in r.inputs.values() if i.mount])
    record.metrics = final_metrics(series, outputs_dir / "metrics.json"
                                   if "metrics.json" in found.stored else None, record.warnings)
    record.outputs, record.skipped_outputs = found.stored, found.skipped
    record.warnings += found.warnings
    if found.problems:
        if record.status == RunStatus.SUCCEEDED:
            record.status, record.reason = RunStatus.FAILED, found.problems[0]
        else:
            record.warnings += found.problems[:1]
    if log_path.exists():
        put = store.artifacts.put(log_path, name="logs")
        record.logs = FileRef(sha256=put.sha256, size=put.size)
    if redactor is not None and redactor.needles:
        series = _redact_names(record, series, redactor)
    return series


def _redact_names(record: RunRecord, series: list[tuple[str, int, float]],
                  redactor: Redactor) -> list[tuple[str, int, float]]:
    """Secret values out of everything a job named: metrics, logged params, output files."""
    r = redactor.redact

    def keys(d: dict) -> dict:
        return {r(k): v for k, v in d.items()}

    before = (list(record.metrics), list(record.params), list(record.outputs))
    record.metrics, record.outputs = keys(record.metrics), keys(record.outputs)
    record.skipped_outputs = {r(k): v for k, v in record.skipped_outputs.items()}
    record.params = {r(k): r(v) if isinstance(v, str) else v for k, v in record.params.items()}
    if before != (list(record.metrics), list(record.params), list(record.outputs)) or any(
            r(str(v)) != str(v) for v in record.params.values()):
        record.warnings.append("the job put a secret's value in a name or logged param; "
                               "it was redacted")
    return [(r(n), s, v) for n, s, v in series]


class LogSink:
    """The job's output as it comes: into the store's log file and to the screen, whole
    lines at a time so a secret value split across chunks is still redacted. A full disk
    must not kill the run: the output keeps showing, and the record says the log is short."""

    def __init__(self, path: Path, redact: Callable[[bytes], bytes],
                 on_log: Callable[[bytes], None]) -> None:
        self.path, self.redact, self.on_log = path, redact, on_log
        self.problems: list[str] = []
        self.carry = b""
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: BinaryIO | None
        try:
            self.file = open(path, "ab")
        except OSError as e:
            self.file = None
            self.problems.append(f"logs were not stored: {e.strerror}")

    def write(self, chunk: bytes) -> None:
        with self.lock:
            self.carry += chunk
            cut = self.carry.rfind(b"\n") + 1
            if cut == 0 and len(self.carry) < 65536:
                return
            cut = cut or len(self.carry)
            self._emit(self.carry[:cut])
            self.carry = self.carry[cut:]

    def close(self) -> None:
        with self.lock:
            if self.carry:
                self._emit(self.carry)
                self.carry = b""
            if self.file is not None:
                try:
                    self.file.close()
                except OSError:
                    pass
                self.file = None

    def _emit(self, data: bytes) -> None:
        data = self.redact(data)
        if self.file is not None and not self.problems:
            try:
                self.file.write(data)
                self.file.flush()
            except OSError as e:
                self.problems.append(f"logs are incomplete: {e.strerror}")
        self.on_log(data)
