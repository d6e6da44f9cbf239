"""One error base for everything repro reports to a user, and the exit-code table.

Every message is one line that names the file, field or run and says what to do. The CLI's
single handler maps each class to its exit code; tracebacks appear only with ``--debug``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of the ``repro`` command (docs/reference.md: "Exit codes")."""

    OK = 0
    INTERNAL = 1  # a bug in repro: please report it with --debug output
    USAGE = 2  # bad spec, bad option, bad --param
    JOB_FAILED = 3  # the job ran and failed (non-zero exit, OOM, lock mismatch)
    NOT_FOUND = 4  # unknown or ambiguous run id
    ENVIRONMENT = 5  # Docker unreachable, image or GPU missing, store unusable
    TIMEOUT = 6  # the job ran past its timeout
    DIFFERS = 8  # a replay produced different outputs (replay/verify)
    CANNOT_REPLAY = 9  # what a replay needs is missing or corrupt (replay/verify)
    CORRUPT = 10  # `repro fsck` found missing or corrupt artifacts
    NOTHING_COMPARED = 11  # a replay had nothing to compare: no outputs, metrics or logs
    IDENTICAL_PREFIX = 12  # the steps a prefix verify ran are identical; the rest did not run
    IDENTICAL_SEGMENT = 13  # a segment between two checkpoints is identical; the rest did not
    INTERRUPTED = 130  # Ctrl-C / SIGTERM stopped the run


# How a replay verdict becomes the command's exit code (a run's status: RunStatus.exit_code).
VERDICT_EXIT = {"identical": ExitCode.OK, "within-tolerance": ExitCode.OK,
                "differs": ExitCode.DIFFERS, "nothing-compared": ExitCode.NOTHING_COMPARED,
                "identical-prefix": ExitCode.IDENTICAL_PREFIX,
                "identical-segment": ExitCode.IDENTICAL_SEGMENT}


class ReproError(Exception):
    """Base of all errors shown to users. ``str(err)`` is the one-line message."""

    exit_code: ExitCode = ExitCode.INTERNAL


class SpecError(ReproError):
    """The run spec (or a command-line override of it) is invalid."""

    exit_code = ExitCode.USAGE


class UsageError(ReproError):
    """A command-line argument is invalid."""

    exit_code = ExitCode.USAGE


class ResolveError(ReproError):
    """Something the spec names does not exist or does not match its pin."""

    exit_code = ExitCode.USAGE


class RunNotFound(ReproError):
    exit_code = ExitCode.NOT_FOUND


class EngineUnavailable(ReproError):
    """The Docker engine cannot be reached or refused an operation."""

    exit_code = ExitCode.ENVIRONMENT


class ImageError(ReproError):
    exit_code = ExitCode.ENVIRONMENT


class RecipeError(ImageError):
    """The user's image recipe is wrong: a Dockerfile step failed, a lock did not install, a
    recipe.yaml names what is not there. Theirs to fix, so a usage error, not the machine's."""

    exit_code = ExitCode.USAGE


class GPUUnavailable(ReproError):
    exit_code = ExitCode.ENVIRONMENT


class StoreError(ReproError):
    exit_code = ExitCode.ENVIRONMENT


class CannotReplay(ReproError):
    """Something a replay needs (image, code, input, lock, bundle artifact) is missing or
    corrupt."""

    exit_code = ExitCode.CANNOT_REPLAY
