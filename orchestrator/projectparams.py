"""A project's params, read from its entry point's source without running it
(``repro init``): argparse and click options with literal defaults (passed back as
``--name=value``), or a Hydra app's config leaves and config-group choices (passed back as
``key=value`` overrides, Hydra's run folder fixed so its name carries no time, its log
excluded). Step counts that never end by default (``-1``, ``None``) are named.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .projectscan import Entry, parse, read_text

FLAG_ACTIONS = {"store_true", "store_false", "store_const", "count", "append", "help",
                "version", "append_const", "extend"}
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
OUTPUT_OPTION = re.compile(r"(^|[-_])(out|output|outdir|save|log|logs|logdir|ckpt|checkpoint"
                           r"|work|work[-_]dir|model[-_]dir|run[-_]dir|results?)([-_]|$)", re.I)
STEP_NAME = re.compile(r"(step|iter|epoch)", re.I)
HYDRA_RUN_DIR = "outputs/run"  # where a Hydra app's own files go (no date, no time)


@dataclass
class Params:
    values: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # options not made params, and why
    style: str = "flags"  # flags (--name=value) or overrides (Hydra: key=value)
    extra_args: list[str] = field(default_factory=list)  # always passed (Hydra's run dir)
    excludes: list[str] = field(default_factory=list)  # outputs the framework stamps
    endless: list[str] = field(default_factory=list)  # step counts that never end
    framework: str = "argparse"
    data_hints: list[str] = field(default_factory=list)  # string defaults: paths maybe


# -- argparse and click ------------------------------------------------------------------

def params(root: Path, entry: Entry) -> Params:
    """The entry's params: a Hydra app's config, else click options, else argparse."""
    tree = parse(root, entry.script)
    if tree is None:
        return Params()
    hydra = _hydra_main(tree)
    if hydra is not None:
        return _hydra_params(root, entry, hydra)
    found = _click_params(tree)
    if found.values or found.skipped:
        return found
    return _argparse_params(tree)


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return None
    return value if isinstance(value, bool | int | float | str) else None


def _option(names: list[str], kw: dict[str, ast.expr], p: Params, flag_kw: tuple[str, ...]
            ) -> None:
    longs = [n for n in names if n.startswith("--")]
    if not longs:
        return
    option = max(longs, key=len)[2:].split("/", 1)[0]
    shown = f"--{option}"
    has_default = "default" in kw
    default = _literal(kw.get("default"))
    if STEP_NAME.search(option) and (not has_default or default is None or default == -1):
        p.endless.append(f"{shown} defaults to {'None' if default is None else default}")
    if any(k in kw and _literal(kw[k]) not in (None, False) for k in flag_kw) or \
            "nargs" in kw or any("/" in n for n in longs):
        p.skipped.append(f"{shown} (a flag or a list)")
        return
    if isinstance(default, bool) or default is None or not PARAM_NAME.fullmatch(option):
        p.skipped.append(f"{shown} (no literal default)")
        return
    p.values[option] = default
    if isinstance(default, str) and not OUTPUT_OPTION.search(option):
        p.data_hints.append(default)


def _argparse_params(tree: ast.Module) -> Params:
    """``add_argument("--name", default=LITERAL)`` options (the option's own spelling, so
    ``--name=value`` reaches argparse as it reads it)."""
    p = Params(framework="argparse")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            continue
        names = [a.value for a in node.args
                 if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        action = kw.get("action")
        if isinstance(action, ast.Constant) and action.value in FLAG_ACTIONS:
            kw["is_flag"] = ast.Constant(True)
        _option(names, kw, p, ("is_flag",))
    return p


def _click_params(tree: ast.Module) -> Params:
    """``@click.option("--name", default=LITERAL)`` on the commands of the entry file."""
    p = Params(framework="click")
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for dec in node.decorator_list:
            if not isinstance(dec, ast.Call):
                continue
            name = dec.func.attr if isinstance(dec.func, ast.Attribute) else \
                dec.func.id if isinstance(dec.func, ast.Name) else ""
            base = dec.func.value.id if isinstance(dec.func, ast.Attribute) and isinstance(
                dec.func.value, ast.Name) else "click"
            if base != "click":
                continue
            args = [a.value for a in dec.args
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name == "argument":
                p.skipped.extend(f"{a} (a positional argument)" for a in args)
            elif name == "option":
                kw = {k.arg: k.value for k in dec.keywords if k.arg}
                _option(args, kw, p, ("is_flag", "multiple", "count", "flag_value"))
    return p


# -- Hydra ------------------------------------------------------------------------------------

def _hydra_main(tree: ast.Module) -> dict[str, Any] | None:
    """The literal arguments of ``@hydra.main(...)``, or None."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and \
                    dec.func.attr == "main" and isinstance(dec.func.value, ast.Name) and \
                    dec.func.value.id == "hydra":
                found = dict(zip(("config_path", "config_name", "version_base"),
                                 (_literal(a) for a in dec.args), strict=False))
                found.update({k.arg: _literal(k.value) for k in dec.keywords if k.arg})
                return found
    return None


def _hydra_params(root: Path, entry: Entry, main: dict[str, Any]) -> Params:
    """A Hydra app: the leaves of its primary config (and of the config groups its defaults
    list picks) as ``key=value`` overrides; Hydra's run folder fixed (its default name is
    the date and time), Hydra's own log (a line per record, timestamped) excluded."""
    p = Params(style="overrides", framework="hydra",
               extra_args=[f"hydra.run.dir={HYDRA_RUN_DIR}"],
               excludes=[f"{HYDRA_RUN_DIR}/*.log"])
    config_path, name = main.get("config_path"), main.get("config_name")
    if not isinstance(config_path, str) or not isinstance(name, str):
        p.skipped.append("the Hydra config (no literal config_path and config_name: a "
                         "structured config; give params in repro.yaml by hand)")
        return p
    folder = (Path(entry.script).parent / config_path).as_posix()
    config = _yaml(root, f"{folder}/{name.removesuffix('.yaml')}.yaml")
    if config is None:
        p.skipped.append(f"the Hydra config {folder}/{name} (missing or unreadable)")
        return p
    for item in config.pop("defaults", None) or []:
        if isinstance(item, dict) and len(item) == 1:
            group, choice = next(iter(item.items()))
            if not isinstance(group, str) or not isinstance(choice, str) or " " in group:
                continue
            group = group.removeprefix("override ")
            p.values[group] = choice
            chosen = _yaml(root, f"{folder}/{group}/{choice}.yaml")
            if chosen is not None:
                chosen.pop("defaults", None)
                config.setdefault(group, {})
                if isinstance(config[group], dict):
                    config[group] = {**chosen, **config[group]}
    _leaves(config, "", p)
    return p


def _yaml(root: Path, rel: str) -> dict[str, Any] | None:
    import yaml

    text = read_text(root, os.path.normpath(rel))
    if text is None:
        return None
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _leaves(node: dict[str, Any], prefix: str, p: Params) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _leaves(value, name + ".", p)
            continue
        if STEP_NAME.search(str(key)) and (value is None or value == -1):
            p.endless.append(f"{name} is {'null' if value is None else value}")
        if not isinstance(value, bool | int | float | str) or not PARAM_NAME.fullmatch(name):
            p.skipped.append(f"{name} (not a single value)")
        elif isinstance(value, str) and ("${" in value or value == "???"):
            p.skipped.append(f"{name} (an interpolation or a required value)")
        else:
            p.values[name] = value
            if isinstance(value, str) and not OUTPUT_OPTION.search(str(key)):
                p.data_hints.append(value)
