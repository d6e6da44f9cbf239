"""``repro cite``: register a result before sharing it. A result card (the number, who made it
and when, and every content address it depends on) and the exact command that re-proves it
from its run id alone; citing marks the run published, so it is never removed."""

from __future__ import annotations

import os
from typing import Any

from . import settings
from .errors import UsageError
from .record import RunRecord, RunStatus
from .store import Store
from .store.db import safe_url
from .views import described_verification, verifications


def card(store: Store, ref: str, metric: str | None) -> dict[str, Any]:
    record = store.runs.get(ref)
    if not store.runs.shared:
        raise UsageError(f"run {record.id} is in the local store {store.runs.place}: a result "
                         "is cited from the team's store, where anyone can re-prove it; set "
                         "REPRO_STORE=postgresql://... (and REPRO_ARTIFACTS) and launch it "
                         "there")
    if record.status != RunStatus.SUCCEEDED:
        raise UsageError(f"run {record.id} {record.status}; only a succeeded run is cited")
    if record.replay_of is not None:
        raise UsageError(f"run {record.id} is a replay of {record.replay_of}; cite that run")
    if metric is not None and metric not in record.metrics:
        known = ", ".join(sorted(record.metrics)) or "none"
        raise UsageError(f"run {record.id} has no metric {metric!r} (its metrics: {known})")
    mark = store.runs.publish(record.id, metric, record.metrics.get(metric) if metric else None,
                              settings.user())
    return _card(record, store, mark, metric)


def _card(record: RunRecord, store: Store, mark: dict[str, Any],
          metric: str | None) -> dict[str, Any]:
    r = record.resolved
    replays = store.runs.replays_of(record.id)
    last = next((x for x in reversed(replays) if x.verdict), None)
    # who made a run or a verdict is the store role that wrote its row; a record's `user`
    # is whatever its client said (a forged replay "by ci@team")
    authors = store.runs.authors([record.id, *(x.id for x in replays)])
    env = {"REPRO_STORE": safe_url(os.environ.get("REPRO_STORE", "")).replace(":***@", "@")}
    if os.environ.get("REPRO_ARTIFACTS"):
        env["REPRO_ARTIFACTS"] = safe_url(os.environ["REPRO_ARTIFACTS"]).replace(":***@", "@")
    command = " ".join(f"{k}={v}" for k, v in env.items()) + f" repro verify {record.id}"
    return {
        "run": record.id, "name": record.name,
        "metric": metric, "value": record.metrics.get(metric) if metric else None,
        "metrics": dict(record.metrics),
        "user": authors.get(record.id, record.user), "says": record.user,
        "host": record.host, "finished_at": record.finished_at,
        "spec_digest": record.spec_digest,
        "code": {"commit": r.code.commit, "dirty": r.code.dirty, "snapshot": r.code.snapshot},
        "image": r.image.digest,
        "image_pulls": [f"{repo}@{digest}" for repo, digest in
                        store.runs.pushes(r.image.digest)],
        "inputs": {name: f"sha256:{inp.sha256}" for name, inp in sorted(r.inputs.items())},
        "lock": f"sha256:{r.packages.sha256}" if r.packages else None,
        "seed": r.seed,
        "last_verdict": ({"result": last.verdict.result if last.verdict else None,
                          "replay": last.id,
                          "by": authors.get(last.id, last.user), "says": last.user,
                          "at": last.finished_at} if last else None),
        "verified": verifications(replays, authors),
        "published": mark,
        "reprove": command,
    }


def markdown(c: dict[str, Any]) -> str:
    value = (f"**{c['metric']} = {c['value']:g}**" if c["metric"] else
             ", ".join(f"{k} = {v:g}" for k, v in sorted(c["metrics"].items())) or "no metrics")
    verdict = c["last_verdict"]
    checked = (f"{verdict['result']} (replay `{verdict['replay']}` by {verdict['by']}"
               f"{_says(verdict)}, {verdict['at']})" if verdict else "not verified yet")
    lines = [
        f"### {c['name']}: {value}",
        "",
        f"- run `{c['run']}` by {c['user']}{_says(c)} on {c['host']}, finished "
        f"{c['finished_at']}",
        f"- spec `{c['spec_digest']}`",
        f"- code `{c['code']['commit'] or 'no commit'}`"
        + (" (dirty: diff recorded)" if c["code"]["dirty"] else "")
        + f", snapshot `{c['code']['snapshot']}`",
        f"- image `{c['image']}`"
        + (f" (pull `{c['image_pulls'][0]}`)" if c["image_pulls"] else ""),
        *[f"- input {k} `{v}`" for k, v in c["inputs"].items()],
        *([f"- lock `{c['lock']}`"] if c["lock"] else []),
        f"- seed {c['seed']}",
        f"- last verdict: {checked}",
        *[f"- verified: {described_verification(v)}" for v in c.get("verified", [])],
        f"- published {c['published']['cited_at']} by {c['published']['cited_by']}",
        "",
        "Re-prove it:",
        "",
        "```sh",
        c["reprove"],
        "```",
    ]
    return "\n".join(lines) + "\n"


def _says(who: dict[str, Any]) -> str:
    """What a record's client said of its user, where the store knows otherwise."""
    said = who.get("says")
    return f" (its client said {said})" if said and said != who.get("user", who.get("by")) \
        else ""
