"""``repro init``: make an existing Python project runnable by repro without editing its code.

It looks, and asks nothing it can infer:

- dependencies: ``requirements.txt`` (used as the lock when every line is already pinned with
  hashes), ``uv.lock`` (exported by ``uv`` when it is installed) or ``pyproject.toml``'s
  ``[project] dependencies``; resolved *inside* the Python image repro builds on (its pip,
  its platform) into a lock of ``NAME==VERSION --hash=sha256:...`` lines, dependencies
  included;
- the entry point: ``train.py`` (or ``main.py``, ``src/train.py``, ``scripts/train.py``), or
  the only script with a ``__main__`` guard;
- params: the script's argparse options with a literal default, passed back as flags
  (``args: flags``) so the command need not repeat them;
- metrics: printed values of the names the script prints (loss, accuracy, ...) scraped from
  its output.

It writes ``repro.yaml`` (the spec ``repro launch`` runs by default), ``repro/image/recipe.yaml``
(the shipped ``python`` base plus the lock) and ``repro/requirements.lock``. Each file starts
with a stamp of its own text: a file whose text no longer matches its stamp was edited and is
never overwritten without ``--force``.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import lockfiles, projectparams, projectscan
from .errors import UsageError
from .lockfiles import LOCKS
from .projectdeps import (
    dependency_source,
    hash_pinned,
    lock_text,
    pyproject_dependencies,
    setup_py_dependencies,
)
from .runtime.repro_boot import parse_lock

SPEC = "repro.yaml"
RECIPE = "repro/image/recipe.yaml"
LOCK = "repro/requirements.lock"
METRIC_WORDS = ("loss", "val_loss", "train_loss", "test_loss", "accuracy", "val_accuracy",
                "acc", "val_acc", "f1", "score", "rmse", "mae", "mse", "r2", "auc", "ppl",
                "perplexity", "precision", "recall")
NUMBER = r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
STAMP = re.compile(r"^# repro init ([0-9a-f]{12})\b.*\n")


SPLITS = "train|training|val|valid|validation|eval|dev|test"
# the split a printed value belongs to: the nearest split word before it on its line
# (`step 9: train loss 1.2, val loss 1.3`, `Test set: Average loss: 0.05`)
SPLIT = rf"(?:\b(?P<split>{SPLITS})\b(?:(?!\b(?:{SPLITS})\b)[^\n])*?)?"
# outputs that carry the time or the host in their name or bytes, by the writer that
# leaves them: recorded as excluded, never compared
STAMPED = {"tensorboard": "**/events.out.tfevents.*", "tensorboardX": "**/events.out.tfevents.*",
           "torch.utils.tensorboard": "**/events.out.tfevents.*", "wandb": "wandb/**",
           "mlflow": "mlruns/**",
           # Lightning's default logger: lightning_logs/version_N/events.out.tfevents.*
           "lightning": "**/events.out.tfevents.*",
           "pytorch_lightning": "**/events.out.tfevents.*"}


@dataclass
class Plan:
    """What ``inspect`` found in a project, before anything is resolved."""

    root: Path
    entry: projectscan.Entry
    params: projectparams.Params
    metrics: dict[str, str] = field(default_factory=dict)
    imports: projectscan.Imports = field(default_factory=projectscan.Imports)
    data: list[projectscan.Data] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = ""  # where dependencies are declared: a lock file, requirements, pyproject

    @property
    def script(self) -> str:
        return self.entry.script

    @property
    def excludes(self) -> list[str]:
        found = [*self.params.excludes]
        for module, glob in STAMPED.items():
            if module in self.imports.third_party and glob not in found:
                found.append(glob)
        return found


def inspect(root: Path, script: str | None = None, deps: str | None = None) -> Plan:
    """What ``root`` holds: entry point (``script`` when given), params, metrics, data it
    reads that git does not hold, and where its dependencies are declared."""
    root = root.resolve()
    if not root.is_dir():
        raise UsageError(f"{root}: no such project folder")
    entry = projectscan.entry_point(root, script)
    found = projectparams.params(root, entry)
    imports = projectscan.imports(root, entry)
    data, notes = projectscan.data_paths(root, set(found.data_hints) | imports.strings)
    source = dependency_source(root, notes, deps)
    return Plan(root=root, entry=entry, params=found, metrics=metric_scrapers(imports.strings),
                imports=imports, data=data, notes=notes, source=source)


def metric_scrapers(texts: set[str] | str) -> dict[str, str]:
    """A named-group regex for each metric word the project's strings mention (``texts``:
    its string constants, or a source text); a split word before it on the line (train,
    val, test, ...) names its own series (``val/loss``)."""
    if isinstance(texts, str):
        try:
            texts = {n.value for n in ast.walk(ast.parse(texts))
                     if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        except SyntaxError:
            texts = set()
    words = {w.lower() for t in texts for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", t)}
    return {w: rf"(?i){SPLIT}\b{w}\b\s*[=:]?\s*{NUMBER}" for w in METRIC_WORDS if w in words}


def spec_text(plan: Plan, has_lock: bool, base: str, own_code: bool) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", plan.root.name).strip("-.") or "train"
    found = plan.params
    command = [*plan.entry.command, *found.extra_args]
    lines = [
        "# The run spec `repro launch` runs by default. Paths are relative to this file; the",
        "# job runs in a copy of the project (its working folder), as you would run it.",
        "version: 1",
        f"name: {name}",
        "image:",
        _note("  build: repro/image", f"the shipped recipe {base} + the lock below")
        if has_lock else _note(f"  build: {base}", "a recipe shipped with repro"),
        *([_note("code: {path: .}", "this folder (not the whole git work tree)")]
          if own_code else []),
        f"command: [{', '.join(_quote(a) for a in command)}]",
        _note("seed: 0", "seeds random, numpy and torch at start (determinism: strict)"),
    ]
    if plan.entry.path_root:
        lines.append(_note(f"env: {{PYTHONPATH: {_quote('/repro/code/' + plan.entry.path_root)}}}",
                           "its package, importable as when installed"))
    if found.values:
        lines.append(_note(f"args: {found.style}", "every param passed as --name=value"
                           if found.style == "flags" else "every param passed as key=value"))
        lines.append("params:")
        lines += [f"  {_quote(k)}: {_yaml_scalar(v)}" for k, v in found.values.items()]
    if has_lock:
        lines += ["packages:", _note(f"  lock: {LOCK}", "checked in the container before each run")]
    if plan.data:
        lines.append(_note("inputs:", "data git does not hold, hashed and pinned"))
        lines += [f"  {_quote(d.name)}: {{path: {_quote(d.path)}, sha256: {d.sha256}, "
                  f"mount: {_quote(d.path)}}}" for d in plan.data]
    if plan.metrics:
        lines.append(_note("metrics_from_log:", "printed values, each match a step"))
        lines += [f"  {k}: {_quote(v)}" for k, v in plan.metrics.items()]
    if plan.excludes:
        lines.append(_note("outputs:", "what the job creates or changes, but"))
        lines.append(_note(f"  exclude: [{', '.join(_quote(g) for g in plan.excludes)}]",
                           "names or bytes that carry the time"))
    lines.append(_note("compare: [outputs, metrics]", "what verify compares"))
    if found.skipped:
        lines.append(f"# not made params ({found.framework}): " + ", ".join(found.skipped))
    return "\n".join(lines) + "\n"


def _note(line: str, comment: str) -> str:
    return f"{line:<30} # {comment}"


def recipe_text(base: str) -> str:
    return (f"# The job's image: the {base} recipe shipped with repro (Debian, a venv with "
            f"pip) and\n# the project's lock, installed with pip --require-hashes\nbase: {base}"
            "\nlock: ../requirements.lock\n")


def _quote(text: str) -> str:
    """``text`` as YAML: plain when that reads back as the same text, else single-quoted."""
    import yaml

    if re.fullmatch(r"[A-Za-z0-9_./-]+", text) and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("'", "''") + "'"


def _yaml_scalar(value: Any) -> str:
    return _quote(value) if isinstance(value, str) else repr(value)


def stamped(text: str) -> str:
    """``text`` with a first line carrying the hash of the rest."""
    return f"# repro init {hashlib.sha256(text.encode()).hexdigest()[:12]} (edit freely; " \
           f"repro init then keeps this file)\n{text}"


def edited(path: Path) -> bool:
    """Was a file repro init wrote changed since (or not written by it at all)?"""
    text = path.read_text(errors="replace")
    m = STAMP.match(text)
    return m is None or hashlib.sha256(text[m.end():].encode()).hexdigest()[:12] != m[1]


def write(root: Path, rel: str, text: str, force: bool, report: dict[str, list[str]]) -> None:
    path = root / rel
    if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
        raise UsageError(f"{path}: a link or not a regular file where repro init writes "
                         f"{rel}; remove it and run repro init again")
    if path.exists() and not force:
        if path.read_text(errors="replace") == stamped(text):
            report["unchanged"].append(rel)
            return
        if edited(path):
            report["kept"].append(rel)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stamped(text))
    report["written"].append(rel)


def init(root: Path, engine: Any, on_line: Callable[[str], None], force: bool = False,
         script: str | None = None, base: str = "python",
         deps: str | None = None) -> dict[str, Any]:
    """Inspect ``root`` and write what it needs; returns what was done. ``base``: the recipe
    the project's image builds on (shipped name), where its requirements are resolved."""
    from .recipes import names, shipped

    base_folder = shipped(base)
    if base_folder is None:
        raise UsageError(f"--base {base}: no such recipe shipped with repro (one of: "
                         f"{', '.join(n for n in names() if n.startswith('python'))})")
    plan = inspect(root, script, deps)
    image = _Image(base_folder, engine, on_line)
    notes: list[str] = list(plan.notes)
    report: dict[str, list[str]] = {"written": [], "kept": [], "unchanged": [], "removed": []}
    has_lock, distributions = _lock(plan, base, image, force, report, notes, on_line)
    for d in plan.data:
        on_line(f"hashing {d.path} ({d.kind}), an input: git does not hold it")
        d.sha256 = _data_digest(plan.root / d.path)
    if plan.imports.third_party:
        missing = projectscan.unprovided(plan.imports, distributions, image.modules())
        where = plan.source or "requirements.txt"
        notes += [f"{rel} imports {mod}, which no declared dependency provides: add "
                  f"{projectscan.DISTRIBUTIONS.get(mod, mod)} to {where}"
                  for mod, rel in missing.items()]
    notes += [f"{e} (it may never end): give it a value (--param at launch) or a timeout in "
              f"{SPEC}" for e in plan.params.endless]
    if has_lock:
        write(plan.root, RECIPE, recipe_text(base), force, report)
    else:  # nothing to install: the shipped recipe is the image; drop what init wrote before
        for rel in (LOCK, RECIPE):
            if (plan.root / rel).is_file() and (force or not edited(plan.root / rel)):
                (plan.root / rel).unlink()
                report["removed"].append(rel)
        for folder in (plan.root / "repro" / "image", plan.root / "repro"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    git_root = next((p for p in (plan.root, *plan.root.parents) if (p / ".git").exists()),
                    None)
    write(plan.root, SPEC, spec_text(plan, has_lock, base, own_code=git_root != plan.root),
          force, report)
    if SPEC in report["kept"]:
        notes += _stale_spec(plan.root / SPEC, has_lock)
    return {"root": str(plan.root), "script": plan.script,
            "command": [*plan.entry.command, *plan.params.extra_args],
            "framework": plan.params.framework, "params": plan.params.values,
            "skipped_options": plan.params.skipped, "metrics": sorted(plan.metrics),
            "inputs": {d.name: d.path for d in plan.data}, "excluded": plan.excludes,
            "dependencies": plan.source or None, "base": base, "notes": notes, **report,
            "next": "repro launch" if git_root is not None else
            "git init && git add -A && git commit -m 'first' && repro launch"}


class _Image:
    """The base image, built and asked what it is only when something needs it."""

    def __init__(self, folder: Path, engine: Any, on_line: Callable[[str], None]) -> None:
        self.folder, self.engine, self.on_line = folder, engine, on_line
        self._id: str | None = None
        self._probe: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        if self._id is None:
            from .engine.images import build

            self._id = build(self.folder, self.engine, self.on_line).id
        return self._id

    def probe(self) -> dict[str, Any]:
        if self._probe is None:
            from .engine.images import probe

            self._probe = probe(self.id, self.engine)
        return self._probe

    def modules(self) -> set[str]:
        return set(self.probe()["modules"])


def _lock(plan: Plan, base: str, image: _Image, force: bool,
          report: dict[str, list[str]], notes: list[str],
          on_line: Callable[[str], None]) -> tuple[bool, set[str]]:
    """Write the project's lock (unless it was edited); returns whether there is one and
    the normalised names of the distributions it pins."""
    lock_path = plan.root / LOCK
    if not plan.source:
        return False, set()
    if not force and lock_path.exists() and edited(lock_path):
        report["kept"].append(LOCK)
        return True, set(parse_lock(lock_path.read_text(errors="replace")))
    declared = _declared_text(plan)
    if base == "python" and re.search(r"(?im)^\s*(name\s*=\s*\")?torch\b", declared):
        warning = ("torch from PyPI on Linux brings NVIDIA's CUDA libraries (several GiB of "
                   "wheels); for a CPU-only run use `repro init --base python-torch --force` "
                   "(Debian's CPU torch), or the PyTorch CPU index: `--extra-index-url "
                   "https://download.pytorch.org/whl/cpu` and torch==VERSION+cpu in "
                   "requirements.txt")
        on_line(f"note: {warning}")
        notes.append(warning)
    if Path(plan.source).name in LOCKS:
        on_line(f"pinning {plan.source} for the {base} image (its Python and platform)")
        locked = lockfiles.read(plan.root, plan.source, declared, image.probe()["env"])
        notes += [f"{plan.source}: left out {s}" for s in locked.skipped]
        lock = lockfiles.lock_text(locked) if locked.pins else ""
    else:
        lock = _resolved_lock(plan, base, image, declared, on_line)
    if not lock:
        notes.append(f"the {base} image already has everything {plan.source} asks for: no "
                     "lock to install")
        return False, set()
    pins = set(parse_lock(lock))
    cuda = sorted(n for n in pins if n.startswith("nvidia-"))
    if cuda:
        notes.append(f"the lock holds {len(cuda)} NVIDIA CUDA package(s) ({', '.join(cuda[:3])}"
                     f"{', ...' if len(cuda) > 3 else ''}): several GiB in the image")
    write(plan.root, LOCK, lock, force, report)
    return True, pins


def _declared_text(plan: Plan) -> str:
    if plan.source == "pyproject.toml":
        return "\n".join(pyproject_dependencies(plan.root)) + "\n"
    if plan.source == "setup.py":
        return "\n".join(setup_py_dependencies(plan.root)) + "\n"
    text = projectscan.read_text(plan.root, plan.source, LOCK_FILE_LIMIT)
    if text is None:
        raise UsageError(f"{plan.root / plan.source}: not a readable file in the project (a "
                         "link out of it, not a regular file, or over 64 MiB)")
    return text


LOCK_FILE_LIMIT = 64 << 20


def _resolved_lock(plan: Plan, base: str, image: _Image, declared: str,
                   on_line: Callable[[str], None]) -> str:
    """requirements.txt (or pyproject's dependencies) resolved by pip inside the image."""
    from .engine.images import lock_requirements

    if plan.source not in ("pyproject.toml", "setup.py") and hash_pinned(declared):
        note = f"# Copied from {plan.source} (every line hash-pinned)\n"
        plan.source += " (already hash-pinned)"
        return note + declared
    on_line(f"resolving {plan.source} inside the {base} image (its pip, its platform)")
    with tempfile.TemporaryDirectory(prefix="repro-init-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(declared)
        items = lock_requirements(requirements, image.id, image.engine, on_line)
    return lock_text(items, plan.source, declared) if items else ""


def _data_digest(path: Path) -> str:
    """The pin of an input: a file's sha256, a folder's manifest digest (as launch
    computes it)."""
    from .hashing import sha256_file
    from .resolve import dir_digest

    return sha256_file(path)[0] if path.is_file() else dir_digest(path, None)[0]


def _stale_spec(spec: Path, has_lock: bool) -> list[str]:
    """What an edited spec (kept) lacks or still names, when the dependencies changed."""
    import yaml

    try:
        doc = yaml.safe_load(spec.read_text(errors="replace")) or {}
    except yaml.YAMLError:
        return []
    uses = isinstance(doc, dict) and isinstance(doc.get("packages"), dict) and \
        doc["packages"].get("lock") == LOCK
    if has_lock and not uses:
        return [f"{SPEC} was edited, so init kept it, but it does not use the lock: add "
                f"`packages: {{lock: {LOCK}}}` and `image: {{build: repro/image}}`"]
    if not has_lock and uses:
        return [f"{SPEC} was edited, so init kept it, but it names {LOCK}, which is gone (no "
                "dependencies to lock): remove `packages:` and build on the shipped recipe"]
    return []
