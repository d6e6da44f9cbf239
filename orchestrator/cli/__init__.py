"""The ``repro`` command: parse, call one core function, render. Nothing else.

Imports of the core (docker, pydantic, rich) happen inside commands so ``repro --help`` stays
fast. One handler in ``main`` maps ``ReproError`` to exit codes; tracebacks only with --debug.
The commands live in modules by what they do (``launching``, ``records``, ``replaying``,
``sharing``, ``images``, ``operations``) on the app and options of ``base``.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import TYPE_CHECKING, NoReturn

from typer import Abort

from .base import opened, state

if TYPE_CHECKING:
    from typer import Typer

__all__ = ["app", "main"]

# The command modules and the commands each registers on the app as it is imported, in the
# order `repro --help` lists them. A command line imports only its command's module: typer
# builds the options of every registered command before it runs one, 40 ms of each launch
# when all 29 were there (BENCHMARKS.md). tests/cli checks this table against the modules.
MODULES = {
    "launching": ("init", "launch", "sweep"),
    "records": ("runs", "importance", "compare", "tag", "note", "show", "logs", "cat", "get",
                "rm"),
    "replaying": ("replay", "verify", "diagnose"),
    "sharing": ("export", "import", "cite", "push", "pull"),
    "images": ("image",),
    "operations": ("fsck", "node-run", "fetch", "wait", "cancel", "gc", "ui", "doctor"),
}
ROOT_VALUE_OPTIONS = ("--store",)  # the root options that take a value


def command_app(argv: list[str] | None = None) -> Typer:
    """The app with the commands ``argv`` may run registered: its command's module alone,
    or every module (no command, `--help`, or a name repro does not know: its error lists
    them all)."""
    args, name = list(argv or []), None
    while args:
        arg = args.pop(0)
        if arg in ROOT_VALUE_OPTIONS:
            args = args[1:]
        elif not arg.startswith("-"):
            name = arg
            break
    wanted = [m for m, names in MODULES.items() if name in names] or list(MODULES)
    for module in wanted:
        import_module(f"{__name__}.{module}")
    from .base import app

    return app


def __getattr__(name: str) -> Typer:
    if name == "app":  # every command (tests, docs)
        return command_app()
    raise AttributeError(name)


def main() -> None:
    """Entry point: usage errors exit 2, repro's own errors are one line on stderr and their
    documented exit code; with --json, stdout also gets one JSON error document (scripts read
    stdout only)."""
    from typer._click.exceptions import ClickException

    from ..errors import ExitCode, ReproError

    json_ = "--json" in sys.argv[1:]
    try:
        try:
            code = command_app(sys.argv[1:])(prog_name="repro", standalone_mode=False)
        finally:
            _say_damaged()
    except ReproError as e:
        if state["debug"]:
            import traceback

            traceback.print_exc()
        _fail(str(e), int(e.exit_code), type(e).__name__, json_)
    except ClickException as e:  # a bad option or argument: click's own message
        e.show()
        _fail(e.format_message(), e.exit_code, "UsageError", json_, echo=False)
    except (KeyboardInterrupt, Abort):
        _fail("interrupted", int(ExitCode.INTERRUPTED), "Interrupted", json_)
    except PermissionError as e:  # a store, cache or project folder of another user
        if state["debug"]:
            raise
        _fail(f"permission denied: {e.filename or e}: this user ({_user()}) may not use it; "
              "point REPRO_HOME (or the path given) at a folder of your own, or ask its "
              "owner for access", int(ExitCode.USAGE), "PermissionError", json_)
    except Exception as e:
        if state["debug"]:
            raise
        _fail(f"internal error: {type(e).__name__}: {e}; rerun with --debug and report it",
              int(ExitCode.INTERNAL), "InternalError", json_, prefix=False)
    sys.exit(code if isinstance(code, int) else 0)


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _say_damaged() -> None:
    """One warning per damaged row a listing skipped (a member's malformed row must not
    break the team's `repro runs`; it names the row and who may remove it)."""
    from .. import ui

    said = set()
    for store in opened:
        for run_id, why in store.runs.damaged.items():
            if run_id not in said:
                said.add(run_id)
                ui.progress(f"warning: {why}")


def _fail(message: str, code: int, kind: str, json_: bool, echo: bool = True,
          prefix: bool = True) -> NoReturn:
    from .. import ui

    if echo:
        if prefix:
            ui.error(message)
        else:
            sys.stderr.write(ui.printable(message) + "\n")
    if json_:
        ui.print_json({"error": {"kind": kind, "message": message, "exit_code": code}})
    sys.exit(code)


if __name__ == "__main__":
    main()
