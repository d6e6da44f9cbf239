"""Reading what crosses the trust boundary: files a job wrote, bundles from elsewhere.

A job runs code nobody reviewed, and a bundle arrives in a pull request: both are hostile
input. Every reader here

- opens without following a symbolic link and without blocking (a FIFO is refused, never
  waited on), and accepts regular files only;
- reads at most a cap, so ``/dev/zero`` behind a name cannot exhaust memory;
- parses JSON with a nesting limit and never lets RecursionError or MemoryError out.

The patterns are the shapes every identifier repro writes has; anything else from outside is
refused before it becomes a path, a SQL value or a terminal line. Bad content raises
``Untrusted`` (a ValueError) with a message that names the problem, never anything else.
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Any

RUN_ID = re.compile(r"^[0-9a-f]{16}$")
SWEEP_ID = re.compile(r"^[0-9a-f]{12}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_DEPTH = 32  # JSON nesting a job file or a manifest may have
META_FILE_LIMIT = 64 << 20  # bytes of one /repro/meta file the host reads
NAME_LIMIT = 256  # characters of a metric, param or output name


class Untrusted(ValueError):
    """Hostile or malformed input; the message says what is wrong with it."""


def read_file(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file, at most ``limit``; None when there is no such file.
    A link, FIFO, device or folder, or a file over the limit, raises Untrusted."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == 40:  # ELOOP: the name is a symbolic link
            raise Untrusted(f"{path.name} is a symbolic link (not followed)") from None
        raise Untrusted(f"{path.name} cannot be opened ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted(f"{path.name} is not a regular file")
        if st.st_size > limit:
            raise Untrusted(f"{path.name} is {st.st_size} bytes, over the limit of {limit}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise Untrusted(f"{path.name} grew past the limit of {limit} bytes")
        return b"".join(chunks)
    except OSError as e:
        raise Untrusted(f"{path.name} cannot be read ({e.strerror})") from None
    finally:
        os.close(fd)


def loads(data: bytes | str, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """JSON from outside: nesting at most ``max_depth``, finite numbers only."""
    try:
        doc = json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise Untrusted(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise Untrusted(f"{what} is not valid JSON ({str(e)[:120]})") from None
    check_depth(doc, what, max_depth)
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def check_depth(doc: Any, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse documents nested deeper than ``max_depth`` (iteratively: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children: Any
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise Untrusted(f"{what} is nested deeper than {max_depth} levels")
        stack.extend((c, depth + 1) for c in children)


def read_json(path: Path, limit: int = META_FILE_LIMIT, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON file a job wrote; None when absent."""
    data = read_file(path, limit)
    return None if data is None else loads(data, path.name, max_depth)


def printable(text: str, lines: bool = False) -> str:
    """``text`` with control characters (ANSI escapes, NUL, newlines unless ``lines``...)
    shown as escapes, so nothing a job or a bundle wrote can move a terminal's cursor or
    restyle it."""
    if text.isprintable():
        return text
    keep = "\t\n" if lines else "\t"
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a metric, param or output name, or None when it can."""
    if not name:
        return "the name is empty"
    if len(name) > NAME_LIMIT:
        return f"the name is longer than {NAME_LIMIT} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs", "Cf") for c in name):
        return "the name contains control characters"
    return None


def relative_path_problem(path: str) -> str | None:
    """Why ``path`` is not a plain relative path inside its folder, or None."""
    if not path or path.startswith("/") or "\0" in path:
        return "is not a relative path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "has an empty, '.' or '..' part"
    return None
