"""The ``repro`` command: parse, call one core function, render. Nothing else.

Imports of the core (docker, pydantic, rich) happen inside commands so ``repro --help`` stays
fast. One handler in ``main`` maps ``ReproError`` to exit codes; tracebacks only with --debug.
The commands live in modules by what they do (``launching``, ``records``, ``replaying``,
``sharing``, ``images``, ``operations``) on the app and options of ``base``.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from typer import Abort

# the command modules register their commands on ``app`` as they are imported, in the order
# `repro --help` lists them
# isort: off
from . import launching, records, replaying, sharing, images, operations  # noqa: F401
# isort: on
from .base import app, opened, state

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: usage errors exit 2, repro's own errors are one line on stderr and their
    documented exit code; with --json, stdout also gets one JSON error document (scripts read
    stdout only)."""
    from typer._click.exceptions import ClickException

    from ..errors import ExitCode, ReproError

    json_ = "--json" in sys.argv[1:]
    try:
        try:
            code = app(prog_name="repro", standalone_mode=False)
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
    except Exception as e:
        if state["debug"]:
            raise
        _fail(f"internal error: {type(e).__name__}: {e}; rerun with --debug and report it",
              int(ExitCode.INTERNAL), "InternalError", json_, prefix=False)
    sys.exit(code if isinstance(code, int) else 0)


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
