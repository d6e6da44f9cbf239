"""What a project is, read from its files without running any of it (``repro init``).

- the entry point: a script (``python3 train.py``) or a module of an in-repo package
  (``python3 -m pkg.train``; a ``src/`` layout puts ``src`` on the path), found by the
  names projects use, ``[project.scripts]``, or the only script with a ``__main__`` guard;
- what it imports that is not the project's own, following its in-repo imports from the
  entry point (an import inside ``try: ... except ImportError`` is optional);
- the data it reads by a relative path that git does not hold (untracked or ignored),
  declared as inputs mounted at the same path.

Its params are read by ``projectparams.py``.

Every file is the project's text, hostile as any: read without following a link out of the
project, never a FIFO or a device, with a size cap; a file that cannot be parsed is skipped.
"""

from __future__ import annotations

import ast
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

SOURCE_LIMIT = 4 << 20  # bytes of one source or config file read
MAX_FILES = 2000  # files followed from the entry point
ENTRY_POINTS = ("train.py", "main.py", "src/train.py", "scripts/train.py", "run.py")
NOT_PROJECT = {".git", ".repro", ".venv", "venv", "env", ".tox", ".nox", "node_modules",
               "site-packages", "__pycache__", "build", "dist", ".mypy_cache",
               ".pytest_cache", ".ruff_cache", ".eggs"}
# folders a job writes into, never data it reads (a local run leaves them behind)
OUTPUT_NAMES = {"out", "output", "outputs", "runs", "logs", "log", "checkpoints", "ckpt",
                "ckpts", "wandb", "lightning_logs", "mlruns", "results", "tb", "tensorboard",
                "multirun", "work", "artifacts", "saved", "save", "models"}



@dataclass
class Entry:
    script: str  # the file, relative to the project
    module: str | None = None  # dotted name when it runs as `python -m`
    path_root: str = ""  # the folder above its package when not the project's root (src)
    call: str | None = None  # `pkg.cli:main` from [project.scripts]

    @property
    def command(self) -> list[str]:
        if self.call:
            mod, _, fn = self.call.partition(":")
            return ["python3", "-c", f"import sys; from {mod} import {fn}; sys.exit({fn}())"]
        return ["python3", "-m", self.module] if self.module else ["python3", self.script]


# -- reading files --------------------------------------------------------------------------

def inside(root: Path, path: Path) -> bool:
    """Is ``path`` (links resolved) in the project?"""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def read_text(root: Path, rel: str, limit: int = SOURCE_LIMIT) -> str | None:
    """A project file's text: None when it is missing, a link out of the project, not a
    regular file (a FIFO, a device: never opened for reading), or larger than ``limit``."""
    path = root / rel
    if not os.path.lexists(path) or not inside(root, path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        return f.read(limit + 1)[:limit].decode("utf-8", "replace")


def parse(root: Path, rel: str) -> ast.Module | None:
    text = read_text(root, rel)
    if text is None:
        return None
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None


def python_files(root: Path, depth: int = 4) -> Iterator[str]:
    """Project .py files (relative), not in virtual environments, builds or hidden folders,
    links never followed."""
    top = len(root.parts)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if d not in NOT_PROJECT and not d.startswith(".")
                         and not (here / d).is_symlink() and len(here.parts) - top < depth)
        for name in sorted(files):
            if name.endswith(".py") and not (here / name).is_symlink():
                yield (here / name).relative_to(root).as_posix()


# -- the entry point ----------------------------------------------------------------------

def entry_point(root: Path, script: str | None = None) -> Entry:
    """The job's entry: ``script`` when given (a file, or ``-m pkg.mod``), else the names
    projects use, a ``train.py`` inside a package, ``[project.scripts]``, or the only
    script with a ``__main__`` guard."""
    if script is not None:
        if script.startswith("-m "):
            return _module_entry(root, script[3:].strip())
        path = root / script
        if not path.is_file() or not inside(root, path):
            raise UsageError(f"--script {script}: no such file in {root}")
        return _as_entry(root, path.resolve().relative_to(root.resolve()).as_posix())
    for name in ENTRY_POINTS:
        if (root / name).is_file() and inside(root, root / name):
            return _as_entry(root, name)
    files = list(python_files(root))
    trains = [f for f in files if f.endswith("/train.py") and not _is_test(f)]
    if len(trains) == 1:
        return _as_entry(root, trains[0])
    scripts = _project_scripts(root)
    if len(scripts) == 1:
        return scripts[0]
    mains = [f for f in files if "/" not in f and _has_main_guard(root, f)]
    if len(mains) == 1:
        return _as_entry(root, mains[0])
    packages = [f for f in files if f.endswith("/__main__.py") and not _is_test(f)]
    if len(packages) == 1:
        return _as_entry(root, packages[0])
    found = sorted(set(trains + mains + [e.call or e.script for e in scripts]))
    raise UsageError(
        f"{root}: cannot tell which script trains: looked for {', '.join(ENTRY_POINTS)}, a "
        "train.py inside a package, [project.scripts] in pyproject.toml and scripts with an "
        "`if __name__ == '__main__'` guard" + (f" (candidates: {', '.join(found)})"
                                                if found else " (none found)")
        + "; name it: repro init --script PATH (or --script '-m pkg.module')")


def _is_test(rel: str) -> bool:
    return any(p in ("tests", "test") or p.startswith("test_") for p in rel.split("/"))


def _has_main_guard(root: Path, rel: str) -> bool:
    text = read_text(root, rel)
    return text is not None and re.search(r"__name__\s*==\s*['\"]__main__['\"]", text) is not None


def _as_entry(root: Path, rel: str) -> Entry:
    """A file as an entry: `python -m` when it is a module of a package (its folder has an
    ``__init__.py``), with the folder above the package on the path."""
    parts = rel.split("/")
    top = len(parts) - 1  # index of the first folder that is part of the package
    while top > 0 and (root.joinpath(*parts[:top]) / "__init__.py").is_file():
        top -= 1
    if top == len(parts) - 1 and parts[-1] != "__main__.py":
        return Entry(script=rel)
    dotted = [*parts[top:-1], parts[-1].removesuffix(".py")]
    if dotted[-1] == "__main__":
        dotted = dotted[:-1]
    if not dotted:
        return Entry(script=rel)
    return Entry(script=rel, module=".".join(dotted), path_root="/".join(parts[:top]))


def _module_entry(root: Path, module: str) -> Entry:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", module):
        raise UsageError(f"--script '-m {module}': not a module name like pkg.train")
    rel = module.replace(".", "/")
    for base in ("", "src/"):
        for cand in (f"{base}{rel}.py", f"{base}{rel}/__main__.py"):
            if (root / cand).is_file() and inside(root, root / cand):
                return Entry(script=cand, module=module, path_root=base.rstrip("/"))
    raise UsageError(f"--script '-m {module}': no {rel}.py or {rel}/__main__.py in {root} or "
                     f"{root / 'src'}")


def _project_scripts(root: Path) -> list[Entry]:
    """``[project.scripts]`` entries whose module is in the project."""
    import tomllib

    text = read_text(root, "pyproject.toml")
    if text is None:
        return []
    try:
        scripts = (tomllib.loads(text).get("project") or {}).get("scripts") or {}
    except tomllib.TOMLDecodeError:
        return []
    out = []
    for target in scripts.values():
        mod, _, fn = str(target).partition(":")
        if not fn or not re.fullmatch(r"[\w.]+", mod) or not fn.isidentifier():
            continue
        try:
            entry = _module_entry(root, mod)
        except UsageError:
            continue
        out.append(Entry(script=entry.script, path_root=entry.path_root, call=f"{mod}:{fn}"))
    return out


# -- what the code imports ----------------------------------------------------------------

@dataclass
class Imports:
    third_party: dict[str, str] = field(default_factory=dict)  # module -> first file
    strings: set[str] = field(default_factory=set)  # string constants (data paths maybe)
    files: list[str] = field(default_factory=list)  # the project files followed


def imports(root: Path, entry: Entry) -> Imports:
    """Every module the entry point imports, following the project's own modules; what is
    neither the project's nor the standard library's is third-party. Imports guarded by
    ``except ImportError`` are optional and left out."""
    found = Imports()
    roots = [root / entry.path_root] if entry.path_root else []
    roots.append(root)
    todo, seen = [entry.script], set[str]()
    while todo and len(seen) < MAX_FILES:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        tree = parse(root, rel)
        if tree is None:
            continue
        found.files.append(rel)
        optional = _optional_imports(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    len(node.value) < 256:
                found.strings.add(node.value)
            for name in _imported(node, rel):
                local = _local_module(root, roots, name)
                if local is not None:
                    todo.extend(local)
                elif id(node) not in optional:
                    top = name.split(".")[0]
                    if top and top not in sys.stdlib_module_names and top != "__future__":
                        found.third_party.setdefault(_import_key(name), rel)
    return found


def _import_key(name: str) -> str:
    return "torch.utils.tensorboard" if name.startswith("torch.utils.tensorboard") \
        else name.split(".")[0]


def _imported(node: ast.AST, rel: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: the package of this file
            base = rel.split("/")[:-1]
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            prefix = ".".join(base)
            mod = f"{prefix}.{node.module}" if node.module else prefix
            return [f"{mod}.{a.name}" for a in node.names] + [mod] if mod else []
        if node.module:
            return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return []


def _local_module(root: Path, roots: list[Path], dotted: str) -> list[str] | None:
    """The project's files a dotted module name (or a name inside one) is, with the
    ``__init__.py`` of each package on the way; None when the project has no such module.
    A module file that is no regular file of the project (a FIFO, a link to a device or out
    of the project) is the project's, but never read."""
    parts = dotted.split(".")
    for base in roots:
        for n in range(len(parts), 0, -1):
            stem = base.joinpath(*parts[:n])
            hits = [p for p in (stem.with_suffix(".py"), stem / "__init__.py")
                    if os.path.lexists(p)]
            if not hits:
                continue
            inits = [base.joinpath(*parts[:k], "__init__.py") for k in range(1, n)]
            return [p.relative_to(root).as_posix() for p in [*inits, hits[0]]
                    if p.is_file() and inside(root, p)]
    return None


def _optional_imports(tree: ast.Module) -> set[int]:
    """ids of import nodes inside a ``try`` that catches ImportError (or anything)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for h in node.handlers:
            kinds = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
            caught |= {k.id for k in kinds if isinstance(k, ast.Name)} | (
                {"*"} if h.type is None else set())
        if caught & {"ImportError", "ModuleNotFoundError", "Exception", "*"}:
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)
                    if isinstance(n, ast.Import | ast.ImportFrom)}
    return out


# modules whose distribution has another name
DISTRIBUTIONS = {
    "sklearn": "scikit-learn", "skimage": "scikit-image", "PIL": "pillow", "yaml": "pyyaml",
    "cv2": "opencv-python", "bs4": "beautifulsoup4", "attr": "attrs",
    "dateutil": "python-dateutil", "dotenv": "python-dotenv", "hydra": "hydra-core",
    "tensorboardX": "tensorboardx", "torch.utils.tensorboard": "tensorboard",
    "google": "protobuf", "jwt": "pyjwt", "git": "gitpython", "serial": "pyserial",
    "Crypto": "pycryptodome", "mpl_toolkits": "matplotlib", "pytorch_lightning":
    "pytorch-lightning", "lightning": "lightning", "sentencepiece": "sentencepiece",
    "pkg_resources": "setuptools", "tomli": "tomli", "wandb": "wandb",
}


def unprovided(found: Imports, distributions: set[str], modules: set[str]) -> dict[str, str]:
    """{module: file} of third-party imports that no locked distribution and nothing the
    image has provides (``distributions``: normalised names; ``modules``: what the image's
    Python can import already)."""
    from .lockfiles import normalize

    out = {}
    for mod, rel in sorted(found.third_party.items()):
        dist = normalize(DISTRIBUTIONS.get(mod, mod))
        if mod == "torch.utils.tensorboard":
            if "tensorboard" not in distributions and "tensorboard" not in modules:
                out[mod] = rel
            continue
        alternatives = {dist, normalize(mod)}
        if mod == "cv2":
            alternatives |= {"opencv-python-headless", "opencv-contrib-python"}
        if not alternatives & distributions and mod not in modules:
            out[mod] = rel
    return out


# -- data ------------------------------------------------------------------------------------

@dataclass
class Data:
    path: str  # relative to the project, as the code names it
    kind: str  # file or dir
    name: str  # the input's name
    sha256: str = ""  # its pin, once hashed


def data_paths(root: Path, hints: set[str]) -> tuple[list[Data], list[str]]:
    """Relative paths the code names (``hints``: string defaults and constants) that exist
    in the project but that git does not hold (untracked or ignored): the job needs them
    and the code snapshot will not carry them. Returns them, and notes on paths left out
    (a link out of the project, a FIFO or device)."""
    tracked = _tracked(root)
    found: dict[str, Data] = {}
    notes: list[str] = []
    for hint in sorted(hints):
        rel = os.path.normpath(hint.strip()).removeprefix("./") if hint.strip() else ""
        if not rel or rel == "." or rel.startswith(("/", "..")) or "\n" in rel or \
                "*" in rel or rel.split("/")[0] in OUTPUT_NAMES | NOT_PROJECT:
            continue
        path = root / rel
        if not os.path.lexists(path) or any(rel == d or rel.startswith(d + "/") for d in found):
            continue
        if not inside(root, path):
            notes.append(f"{rel} is a link out of the project: not declared (declare it as "
                         "an input in repro.yaml if the job reads it)")
            continue
        st = path.lstat() if not path.is_symlink() else path.stat()
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            notes.append(f"{rel} is not a regular file or folder: not declared")
            continue
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        if kind == "file" and rel in tracked:
            continue  # in the snapshot already
        if kind == "dir" and not _holds_untracked(root, rel, tracked):
            continue
        found = {k: v for k, v in found.items() if not k.startswith(rel + "/")}
        found[rel] = Data(path=rel, kind=kind, name="")
    names: set[str] = set()
    for data in found.values():  # named by their last part; by their path on a clash
        for text in (data.path.rsplit("/", 1)[-1], data.path.replace("/", "-")):
            name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "data"
            if name not in names:
                break
        n, base = 2, name
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.add(name)
        data.name = name
    return sorted(found.values(), key=lambda d: d.path), notes


def _tracked(root: Path) -> set[str]:
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached"],
                             capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    if out.returncode != 0:
        return set()
    prefix = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-prefix"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return {f[len(prefix):] for f in out.stdout.split("\0") if f and f.startswith(prefix)}


def _holds_untracked(root: Path, rel: str, tracked: set[str]) -> bool:
    for folder, dirs, files in os.walk(root / rel):
        dirs[:] = [d for d in dirs if not Path(folder, d).is_symlink()]
        for name in files:
            if Path(folder, name).relative_to(root).as_posix() not in tracked:
                return True
    return False
