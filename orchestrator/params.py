"""A run's params on their way into the job: ``{params.NAME}`` and ``{seed}`` substituted in
its command and env, every param as argparse flags (``args: flags``), Hydra overrides
(``args: overrides``) or REPRO_PARAM_* variables, and ``--param NAME=VALUE`` typed as the
spec declares it."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import SpecError

if TYPE_CHECKING:
    from .spec import LoadedSpec

PLACEHOLDER = re.compile(r"\{(params\.[A-Za-z_][A-Za-z0-9_.-]*|seed)\}")


def param_flags(params: dict[str, Any]) -> list[str]:
    """``args: flags``: --name=value for every param, as argparse reads them."""
    return [f"--{name}={substitute('{params.' + name + '}', params, 0)}" for name in params]


def param_overrides(params: dict[str, Any]) -> list[str]:
    """``args: overrides``: name=value for every param, as Hydra's override grammar reads
    them: a string that would read as another type, or holds spaces or symbols, is quoted."""
    out = []
    for name, value in params.items():
        text = substitute("{params." + name + "}", params, 0)
        if isinstance(value, str) and (not re.fullmatch(r"[A-Za-z_/][A-Za-z0-9_./:-]*", value)
                                       or value.lower() in ("true", "false", "null", "nan",
                                                            "inf")):
            text = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        out.append(f"{name}={text}")
    return out


def param_env(params: dict[str, Any]) -> dict[str, str]:
    """REPRO_PARAM_<NAME> for every param (non-alphanumerics as _, upper case)."""
    return {"REPRO_PARAM_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper():
            substitute("{params." + name + "}", params, 0) for name in params}


def substitute(arg: str, params: dict[str, Any], seed: int) -> str:
    def one(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref.startswith("params.") and ref[7:] not in params:
            return m.group(0)
        if ref == "seed":
            return str(seed)
        value = params[ref[7:]]
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return PLACEHOLDER.sub(one, arg)


def apply_overrides(loaded: LoadedSpec, overrides: list[str]) -> LoadedSpec:
    """``--param k=v``: known params only, converted to the declared type."""
    spec = loaded.spec
    params = dict(spec.params)
    for item in overrides:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise SpecError(f"--param {item!r}: expected NAME=VALUE")
        if name not in params:
            known = ", ".join(sorted(params)) or "none"
            raise SpecError(f"--param {name}: {loaded.path} declares no param {name!r} "
                            f"(params: {known})")
        params[name] = _convert(name, raw, params[name], loaded)
    return replace(loaded, spec=spec.model_copy(update={"params": params}))


def _convert(name: str, raw: str, current: Any, loaded: LoadedSpec) -> Any:
    kind = type(current).__name__
    try:
        if isinstance(current, bool):
            low = raw.lower()
            if low in ("true", "yes", "1", "on"):
                return True
            if low in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
    except ValueError:
        raise SpecError(f"--param {name}={raw}: params.{name} is a {kind} "
                        f"({loaded.where(('params', name))}); got {raw!r}") from None
    return raw
