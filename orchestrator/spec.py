"""Run specs: the strict ``RunSpec`` model and YAML loading with line numbers.

Errors name the file, the line and the field, on one line:
``specs/digits.yaml:12: resources.cpus: Input should be greater than 0 (got -1)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import SpecError, UsageError
from .params import PLACEHOLDER
from .spec_paths import path_problems
from .units import parse_duration, parse_size
from .untrusted import HEX64, relative_path_problem

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"

ParamValue = StrictBool | StrictInt | StrictFloat | StrictStr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSpec(_Strict):
    """Exactly one of ``build`` (an ``images/`` recipe folder) or ``ref`` (``NAME@sha256:...``
    or a tag that is resolved to its digest at launch)."""

    build: str | None = None
    ref: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ImageSpec:
        if (self.build is None) == (self.ref is None):
            raise ValueError("give exactly one of 'build: images/DIR' or 'ref: NAME@sha256:...'")
        return self

    @property
    def pinned(self) -> bool:
        return self.ref is not None and "@sha256:" in self.ref


class CodeSpec(_Strict):
    """A folder inside a git work tree; default: the work tree that holds the spec."""

    path: str | None = None


class PackagesSpec(_Strict):
    lock: str


class InputSpec(_Strict):
    """A file or folder the job reads, hashed (and pinned by ``sha256``). The job sees it at
    ``/repro/inputs/NAME`` and, with ``mount``, at that path relative to its working folder
    (``data/train.csv``: where the project's own code opens it)."""

    path: str
    sha256: str | None = None
    mount: str | None = None

    @field_validator("mount")
    @classmethod
    def _inside(cls, v: str | None) -> str | None:
        if v is None:
            return v
        problem = relative_path_problem(v.rstrip("/"))
        if problem or v.strip("/") in ("", "."):
            raise ValueError(f"{v!r} must be a path inside the working folder, like "
                             "data/train.csv (no leading /, no ..)")
        return v.rstrip("/")

    @field_validator("sha256", mode="before")
    @classmethod
    def _hex(cls, v: Any) -> str | None:
        if v is None:
            return v
        if not isinstance(v, str):
            raise ValueError("must be a quoted string of 64 hex digits (YAML read a number)")
        v = v.removeprefix("sha256:").lower()
        if not HEX64.match(v):
            raise ValueError("must be 64 hex digits (optionally prefixed 'sha256:')")
        return v


class GPURequirement(_Strict):
    count: Annotated[int, Field(ge=1)] = 1
    model: str | None = None
    min_memory_gb: Annotated[float, Field(gt=0)] | None = None


class Resources(_Strict):
    cpus: Annotated[float, Field(gt=0, le=1024)] = 1
    memory: str = "2g"
    gpus: Annotated[int, Field(ge=0)] | GPURequirement = 0

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> str:
        parse_memory(v)
        return str(v)

    @property
    def threads(self) -> int:
        """Thread count pinned for BLAS/OpenMP: the CPU limit rounded up, at least 1."""
        return max(1, int(-(-self.cpus // 1)))

    @property
    def gpu_requirement(self) -> GPURequirement | None:
        if isinstance(self.gpus, GPURequirement):
            return self.gpus
        return GPURequirement(count=self.gpus) if self.gpus else None


class OutputsSpec(_Strict):
    """Which files of the working folder are the run's outputs: ``include`` globs (default:
    everything the job created or changed), less ``exclude`` globs (listed in the record as
    excluded, never dropped silently). A plain list in the spec is ``include``."""

    include: list[StrictStr] = ["**"]
    exclude: list[StrictStr] = []

    @field_validator("include", "exclude")
    @classmethod
    def _globs_stay_inside(cls, v: list[str]) -> list[str]:
        for g in v:
            if g.startswith("/") or ".." in Path(g).parts:
                raise ValueError(f"output glob {g!r} must stay inside the working folder")
        return v


class SecretSpec(_Strict):
    """A secret by name, delivered as the file ``/run/secrets/NAME``; ``env: true`` also sets
    the environment variable (visible to ``docker inspect``: only for jobs that need it)."""

    name: Annotated[str, Field(pattern=ENV_NAME_RE)]
    env: bool = False


class ResumeSpec(_Strict):
    """How the job resumes from one of its checkpoints (a segment verify, ``partial.py``):
    ``checkpoints``, where it writes them in its working folder, ``{step}`` standing for the
    step (``checkpoints/step_{step}.pt``); ``args``, appended to the command to resume,
    ``{path}`` standing for the checkpoint's path and ``{step}`` for its step."""

    checkpoints: Annotated[str, Field(min_length=1, max_length=512)]
    args: Annotated[list[StrictStr], Field(min_length=1)]

    @field_validator("checkpoints")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if v.count("{step}") != 1:
            raise ValueError(f"{v!r} must name the step once, as {{step}} (e.g. "
                             "'checkpoints/step_{step}.pt')")
        if v.startswith("/") or ".." in v.split("/") or "\\" in v:
            raise ValueError(f"{v!r} must be a path inside the working folder (relative, "
                             "no '..')")
        return v

    @field_validator("args")
    @classmethod
    def _takes_path(cls, v: list[str]) -> list[str]:
        if not any("{path}" in a for a in v):
            raise ValueError("one argument must pass the checkpoint, as {path} (e.g. "
                             "['--resume', '{path}'])")
        return v


class RunSpec(_Strict):
    version: Literal[1]
    name: Annotated[str, Field(pattern=NAME_RE, max_length=128)]
    image: ImageSpec
    code: CodeSpec = Field(default_factory=CodeSpec)
    command: Annotated[list[StrictStr], Field(min_length=1)]
    params: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")], ParamValue] = {}
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None
    packages: PackagesSpec | None = None
    inputs: dict[Annotated[str, Field(pattern=NAME_RE)], InputSpec] = {}
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)
    resources: Resources = Field(default_factory=Resources)
    env: dict[Annotated[str, Field(pattern=ENV_NAME_RE)], StrictStr | StrictInt | StrictFloat] = {}
    secrets: list[Annotated[str, Field(pattern=ENV_NAME_RE)] | SecretSpec] = []
    network: Literal["none", "bridge"] = "none"
    timeout: float | None = None  # seconds; '10m' and the like are parsed on the way in
    determinism: Literal["strict", "off"] = "strict"
    compare: list[Literal["outputs", "metrics", "logs"]] = ["outputs", "metrics"]
    log_normalize: list[StrictStr] = []
    # flags: --name=value for every param; overrides: name=value (Hydra's override syntax)
    args: Literal["none", "flags", "overrides"] = "none"
    metrics_from_log: dict[Annotated[str, Field(min_length=1, max_length=256)], StrictStr] = {}
    resume: ResumeSpec | None = None

    @field_validator("metrics_from_log")
    @classmethod
    def _scrapers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            try:
                compiled = re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{name}: {pattern!r} is not a regular expression ({e})"
                                 ) from None
            if "value" not in compiled.groupindex:
                raise ValueError(f"{name}: {pattern!r} needs a group named value, e.g. "
                                 "'loss[=: ]+(?P<value>[-0-9.eE+]+)'")
        return v

    @field_validator("determinism", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return "off" if v is False else v  # YAML reads a bare `off` as false

    @field_validator("log_normalize")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{pattern!r} is not a regular expression ({e})") from None
        return v

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_list(cls, v: Any) -> Any:
        return {"include": v} if isinstance(v, list) else v

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _secrets_not_env(self) -> RunSpec:
        clash = sorted(set(self.secret_names) & set(self.env))
        if clash:
            raise ValueError(f"{clash[0]} is both in env and secrets; keep secrets out of env")
        if len(set(self.secret_names)) != len(self.secret_names):
            raise ValueError("a secret is named twice")
        return self

    @property
    def secret_names(self) -> list[str]:
        return [s if isinstance(s, str) else s.name for s in self.secrets]

    @property
    def secret_env_names(self) -> list[str]:
        """Secrets the job also gets as environment variables."""
        return [s.name for s in self.secrets if isinstance(s, SecretSpec) and s.env]


# -- value parsers -------------------------------------------------------------------------

DOCKER_MEMORY_MIN = 6 << 20


def parse_memory(v: Any) -> int:
    """resources.memory -> bytes; at least Docker's minimum of 6 MiB."""
    n = parse_size(v, "memory")
    if n < DOCKER_MEMORY_MIN:
        raise ValueError("memory must be at least 6m (Docker's minimum)")
    return n


# -- loading -------------------------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec plus where it came from, for errors and path resolution."""

    spec: RunSpec
    path: Path
    lines: dict[Loc, int] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def where(self, loc: Loc) -> str:
        """'FILE:LINE' of the deepest known part of ``loc``."""
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return f"{self.path}:{self.lines[loc[:n]]}"
        return str(self.path)

    def error(self, loc: Loc, message: str) -> SpecError:
        dotted = ".".join(str(p) for p in loc)
        return SpecError(f"{self.where(loc)}: {dotted}: {message}")


DEFAULT_SPEC = "repro.yaml"


def default_spec(start: Path) -> Path:
    """``repro.yaml`` in ``start`` or the nearest folder above it, up to the git work tree's
    root: the spec ``repro launch`` runs when given none."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / DEFAULT_SPEC).is_file():
            return folder / DEFAULT_SPEC
        if (folder / ".git").exists():
            break
    raise UsageError(f"no spec given and no {DEFAULT_SPEC} in {start} or above it; run "
                     "`repro init` to write one, or name a spec file")


def load_spec(path: str | Path) -> LoadedSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read spec: {e}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        opened = getattr(e, "context_mark", None)  # where the unclosed [ { or quote began
        context = getattr(e, "context", None) or ""
        if opened is not None and (mark is None or opened.line != mark.line):
            problem += f" ({context.strip()} that began at line {opened.line + 1})" \
                if context else f" (see line {opened.line + 1})"
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    lines: dict[Loc, int] = {}
    problems: list[tuple[int, str]] = []  # (line, "FILE:LINE: field: message")
    if node is not None:
        try:
            _index_lines(node, (), lines, path, problems)
        except RecursionError:
            raise SpecError(f"{path}: invalid YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: a run spec is a YAML mapping with 'version: 1' at the top")
    if data.get("version") != 1:
        raise SpecError(
            f"{path}:{lines.get(('version',), 1)}: version: must be 1 (got "
            f"{data.get('version')!r}); this repro reads spec version 1"
        )
    spec = None
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as e:
        problems += [_one_error(err, path, lines) for err in e.errors(include_url=False)]
    problems += [_problem(path, lines, loc, msg) for loc, msg in _ref_problems(data)]
    problems += [_problem(path, lines, loc, msg) for loc, msg in path_problems(data, path)]
    if problems or spec is None:  # every problem at once, in the order of the file
        raise SpecError("\n".join(text for _, text in sorted(set(problems))))
    return LoadedSpec(spec=spec, path=path, lines=lines)


def _problem(path: Path, lines: dict[Loc, int], loc: Loc, message: str) -> tuple[int, str]:
    line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
    dotted = ".".join(str(p) for p in loc) or "spec"
    return line, f"{path}:{line}: {dotted}: {message}"


def _index_lines(node: yaml.Node, loc: Loc, out: dict[Loc, int], path: Path,
                 problems: list[tuple[int, str]]) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            k = key.value
            if k in seen:
                line = key.start_mark.line + 1
                dotted = ".".join(str(p) for p in (*loc, k))
                problems.append((line, f"{path}:{line}: {dotted}: duplicate key; keep one"))
            seen.add(k)
            out.setdefault((*loc, k), key.start_mark.line + 1)
            _index_lines(value, (*loc, k), out, path, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*loc, i), out, path, problems)


def _one_error(first: Any, path: Path, lines: dict[Loc, int]) -> tuple[int, str]:
    loc: Loc = tuple(first["loc"])
    shown: list[str | int] = []
    for part in loc:  # drop pydantic's union tags ('int', 'function-after[...]')
        if (*shown, part) in lines:
            shown.append(part)
            continue
        if first["type"] == "missing":
            shown.append(part)
        break
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(tuple(shown[:-1]))
        msg = "unknown key" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
    elif first["type"] != "missing" and "input" in first:
        msg += f" (got {first['input']!r})"
    return _problem(path, lines, tuple(shown), msg)


def _allowed_keys(loc: Loc) -> list[str]:
    """Field names of the model found at ``loc`` (for 'unknown key' messages)."""
    model: Any = RunSpec
    parts = list(loc)
    while parts:
        fields = getattr(model, "model_fields", None)
        part = parts.pop(0)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        if get_origin(ann) is dict:
            if not parts:
                return []
            parts.pop(0)
            ann = get_args(ann)[1]
        model = _model_in(ann)
    return sorted(getattr(model, "model_fields", {}))


def _model_in(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return next((m for a in get_args(ann) if (m := _model_in(a)) is not None), None)


def _ref_problems(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Every ``{params.NAME}`` in the command and in env values names a declared param.
    Other braces (say, an f-string in ``python -c``) are left alone. Read from the raw
    document, so these come with the spec's other problems."""
    params, env = _mapping(data.get("params")), _mapping(data.get("env"))
    raw = data.get("command")
    command: list[Any] = raw if isinstance(raw, list) else []
    places: list[tuple[Loc, Any]] = [(("command", i), a) for i, a in enumerate(command)]
    places += [(("env", str(k)), v) for k, v in env.items()]
    out: list[tuple[Loc, str]] = []
    for loc, text in places:
        for ref in PLACEHOLDER.findall(str(text)):
            if ref.startswith("params.") and ref[7:] not in params:
                known = ", ".join(sorted(map(str, params))) or "none declared"
                out.append((loc, f"{{{ref}}} names no param (params: {known}); declare it "
                                 "under params or fix the name"))
    for k in env:
        if str(k).startswith("REPRO_"):
            out.append((("env", str(k)), "REPRO_* variables are set by repro; rename it"))
    return out


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}
