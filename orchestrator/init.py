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
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

SPEC = "repro.yaml"
RECIPE = "repro/image/recipe.yaml"
LOCK = "repro/requirements.lock"
ENTRY_POINTS = ("train.py", "main.py", "src/train.py", "scripts/train.py")
METRIC_WORDS = ("loss", "val_loss", "train_loss", "test_loss", "accuracy", "val_accuracy",
                "acc", "val_acc", "f1", "score", "rmse", "mae", "mse", "r2", "auc", "ppl",
                "perplexity", "precision", "recall")
NUMBER = r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
FLAG_ACTIONS = {"store_true", "store_false", "store_const", "count", "append", "help",
                "version", "append_const", "extend"}
STAMP = re.compile(r"^# repro init ([0-9a-f]{12})\b.*\n")


@dataclass
class Plan:
    root: Path
    script: str
    params: dict[str, Any] = field(default_factory=dict)
    skipped_options: list[str] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)
    requirements: Path | None = None  # what the lock is made from
    source: str = ""  # how: requirements.txt, uv.lock, pyproject.toml, hashed requirements


def inspect(root: Path, script: str | None = None) -> Plan:
    """What ``root`` holds: entry point (``script`` when given), params, metrics, and where
    its dependencies are declared."""
    root = root.resolve()
    if not root.is_dir():
        raise UsageError(f"{root}: no such project folder")
    if script is None:
        script = entry_point(root)
    elif not (root / script).is_file():
        raise UsageError(f"--script {script}: no such file in {root}")
    else:
        script = (root / script).resolve().relative_to(root).as_posix()
    source = (root / script).read_text(errors="replace")
    params, skipped = argparse_params(source)
    plan = Plan(root=root, script=script, params=params, skipped_options=skipped,
                metrics=metric_scrapers(source))
    if (root / "requirements.txt").is_file():
        plan.requirements, plan.source = root / "requirements.txt", "requirements.txt"
    elif (root / "uv.lock").is_file() and shutil.which("uv"):
        plan.source = "uv.lock"
    elif (root / "pyproject.toml").is_file() and pyproject_dependencies(root):
        plan.source = "pyproject.toml"
    return plan


def entry_point(root: Path) -> str:
    for name in ENTRY_POINTS:
        if (root / name).is_file():
            return name
    mains = sorted(p.relative_to(root).as_posix() for p in root.glob("*.py")
                   if "__main__" in p.read_text(errors="replace"))
    if len(mains) == 1:
        return mains[0]
    found = f" (candidates: {', '.join(mains)})" if mains else ""
    raise UsageError(f"{root}: cannot tell which script trains{found}; name it: repro init "
                     "--script PATH")


def argparse_params(source: str) -> tuple[dict[str, Any], list[str]]:
    """{option: default} of every ``add_argument("--name", default=LITERAL)`` (the option's
    own spelling, so ``args: flags`` passes ``--name=value`` back as argparse reads it), and
    the options left out (no literal default, or a flag action)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}, []
    params: dict[str, Any] = {}
    skipped: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            continue
        names = [a.value for a in node.args
                 if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        longs = [n for n in names if n.startswith("--")]
        if not longs:
            continue
        option = max(longs, key=len)[2:]
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        action = kw.get("action")
        if (isinstance(action, ast.Constant) and action.value in FLAG_ACTIONS) or "nargs" in kw:
            skipped.append(f"--{option}")
            continue
        default = _literal(kw.get("default"))
        if isinstance(default, bool) or default is None or not re.fullmatch(
                r"[A-Za-z_][A-Za-z0-9_.-]*", option):
            skipped.append(f"--{option}")
            continue
        params[option] = default
    return params, skipped


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return value if isinstance(value, int | float | str) else None


SPLITS = "train|training|val|valid|validation|eval|dev|test"
# the split a printed value belongs to: the nearest split word before it on its line
# (`step 9: train loss 1.2, val loss 1.3`, `Test set: Average loss: 0.05`)
SPLIT = rf"(?:\b(?P<split>{SPLITS})\b(?:(?!\b(?:{SPLITS})\b)[^\n])*?)?"


def metric_scrapers(source: str) -> dict[str, str]:
    """A named-group regex for each metric word the script's strings mention; a split word
    before it on the line (train, val, test, ...) names its own series (``val/loss``)."""
    try:
        texts = [n.value for n in ast.walk(ast.parse(source))
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    except SyntaxError:
        texts = []
    words = {w.lower() for t in texts for w in re.findall(r"[A-Za-z_]+", t)}
    return {w: rf"(?i){SPLIT}\b{w}\b\s*[=:]?\s*{NUMBER}" for w in METRIC_WORDS if w in words}


def pyproject_dependencies(root: Path) -> list[str]:
    import tomllib

    try:
        data = tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{root / 'pyproject.toml'}: cannot read it ({e})") from None
    deps = (data.get("project") or {}).get("dependencies") or []
    return [str(d) for d in deps]


def hash_pinned(text: str) -> bool:
    """Is every requirement line of ``text`` pinned with == and carrying a --hash?"""
    logical = re.sub(r"\\\n", " ", text)
    lines = [ln.split(" #", 1)[0].strip() for ln in logical.splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith(("#", "-"))]
    return bool(reqs) and all("==" in r and "--hash=" in r for r in reqs)


def lock_text(items: list[dict], source: str) -> str:
    missing = [f"{i.get('name')} ({i.get('url')})" for i in items if not i.get("sha256")]
    if missing:
        raise UsageError(f"{source}: {missing[0]} has no sha256 on its index; pin it to a "
                         "release from an index (PyPI) so it can be hash-locked")
    lines = [f"{i['name']}=={i['version']} \\\n    --hash=sha256:{i['sha256']}"
             for i in sorted(items, key=lambda i: str(i["name"]).lower())]
    return (f"# Resolved from {source} for the image's Python and platform, every dependency "
            "pinned\n# with its hash; installed with pip --require-hashes. Regenerate: repro "
            "init --force\n" + "\n".join(lines) + "\n")


def requirements_for_lock(plan: Plan, tmp: Path) -> Path | None:
    """The requirements file to resolve (None: nothing to install)."""
    if plan.source == "requirements.txt":
        return plan.requirements
    if plan.source == "uv.lock":
        out = tmp / "requirements.txt"
        done = subprocess.run(["uv", "export", "--frozen", "--format", "requirements-txt",
                               "--no-emit-project", "--no-hashes", "-o", str(out)],
                              cwd=plan.root, capture_output=True, text=True)
        if done.returncode != 0:
            raise UsageError(f"{plan.root / 'uv.lock'}: uv export failed: "
                             f"{done.stderr.strip().splitlines()[-1:]}")
        return out
    if plan.source == "pyproject.toml":
        out = tmp / "requirements.txt"
        out.write_text("\n".join(pyproject_dependencies(plan.root)) + "\n")
        return out
    return None


def spec_text(plan: Plan, has_lock: bool, base: str, own_code: bool) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", plan.root.name).strip("-.") or "train"
    lines = [
        "# The run spec `repro launch` runs by default. Paths are relative to this file.",
        "version: 1",
        f"name: {name}",
        "image:",
        _note("  build: repro/image", f"the shipped recipe {base} + the lock below")
        if has_lock else _note(f"  build: {base}", "a recipe shipped with repro"),
        *([_note("code: {path: .}", "this folder (not the whole git work tree)")]
          if own_code else []),
        f"command: [python3, {_quote(f'/repro/code/{plan.script}')}]",
        _note("seed: 0", "seeds random, numpy and torch at start (determinism: strict)"),
    ]
    if plan.params:
        lines.append(_note("args: flags", "every param passed as --name=value"))
        lines.append("params:")
        lines += [f"  {_quote(k)}: {_yaml_scalar(v)}" for k, v in plan.params.items()]
    if has_lock:
        lines += ["packages:", _note(f"  lock: {LOCK}", "checked in the container before each run")]
    if plan.metrics:
        lines.append(_note("metrics_from_log:", "printed values, each match a step"))
        lines += [f"  {k}: {_quote(v)}" for k, v in plan.metrics.items()]
    lines += [_note('outputs: ["**"]', "everything the job writes in its working folder"),
              _note("compare: [outputs, metrics]", "what verify compares")]
    if plan.skipped_options:
        lines.append("# not made params (flags, or no literal default): "
                     + ", ".join(plan.skipped_options))
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
         script: str | None = None, base: str = "python") -> dict[str, Any]:
    """Inspect ``root`` and write what it needs; returns what was done. ``base``: the recipe
    the project's image builds on (shipped name), where its requirements are resolved."""
    from .engine.images import build, lock_requirements
    from .recipes import names, shipped

    base_folder = shipped(base)
    if base_folder is None:
        raise UsageError(f"--base {base}: no such recipe shipped with repro (one of: "
                         f"{', '.join(n for n in names() if n.startswith('python'))})")
    plan = inspect(root, script)
    notes: list[str] = []
    report: dict[str, list[str]] = {"written": [], "kept": [], "unchanged": [], "removed": []}
    has_lock = False
    lock_path = plan.root / LOCK
    if plan.source and (force or not lock_path.exists() or not edited(lock_path)):
        with tempfile.TemporaryDirectory(prefix="repro-init-") as tmp:
            requirements = requirements_for_lock(plan, Path(tmp))
            assert requirements is not None
            text = requirements.read_text(errors="replace")
            if plan.source == "requirements.txt" and hash_pinned(text):
                plan.source = "requirements.txt (already hash-pinned)"
                lock = "# Copied from requirements.txt (every line hash-pinned)\n" + text
            else:
                if base == "python" and re.search(r"(?im)^\s*torch\b", text):
                    notes.append("torch from PyPI on Linux brings the CUDA libraries (several "
                                 "GiB); `repro init --base python-torch --force` builds on "
                                 "Debian's CPU torch 1.13 instead")
                on_line(f"resolving {plan.source} inside the {base} image (its pip, its "
                        "platform)")
                image = build(base_folder, engine, on_line)
                items = lock_requirements(requirements, image.id, engine, on_line)
                lock = lock_text(items, plan.source) if items else ""
                if not items:
                    notes.append(f"the {base} image already has everything {plan.source} "
                                 "asks for: no lock to install")
        if lock:
            write(plan.root, LOCK, lock, force, report)
            has_lock = True
    elif plan.source:
        report["kept"].append(LOCK)
        has_lock = True
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
    git = git_root is not None
    return {"root": str(plan.root), "script": plan.script, "params": plan.params,
            "skipped_options": plan.skipped_options, "metrics": sorted(plan.metrics),
            "dependencies": plan.source or None, "base": base, "notes": notes, **report,
            "next": "repro launch" if git else
            "git init && git add -A && git commit -m 'first' && repro launch"}
