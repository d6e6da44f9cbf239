"""Runs first inside every repro container (via boot.sh), then replaces itself with the job.

1. Writes /repro/meta/env.json: OS release, Python version, every installed distribution
   (what the job may rewrite: repro records these facts from ``--facts``, run by repro in a
   throwaway container of the same image, and falls back on this file only when it could
   not).
2. Checks the installed distributions against the spec's package lock (/repro/lock.txt) and
   exits 86 naming each offending package when they disagree.
3. execs the job's command.

Zero dependencies: the standard library of whatever Python the image has (3.8+).
"""

import json
import os
import sys

LOCK_MISMATCH = 86
META = "/repro/meta"


def normalize(name):
    """PEP 503: runs of -, _ and . become one -, lower case (without importing re: this
    runs before every job, and every millisecond here is on the launch path)."""
    out = []
    for ch in name.lower():
        if ch in "-_.":
            if not out or out[-1] != "-":
                out.append("-")
        else:
            out.append(ch)
    return "".join(out)


def lock_entries(text):
    """[(normalized name, version, marker or None)] of a pip requirements file pinned with
    '=='. Options (--hash=..., -i ...), comments, environment markers and line continuations
    are allowed; a requirement that is not pinned with '==' raises ValueError naming its
    line."""
    import re

    entries = []
    logical = re.sub(r"\\\n", " ", text)
    for n, line in enumerate(logical.splitlines(), 1):
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        req, _, rest = line.partition(";")
        req = req.split(" --", 1)[0].strip()
        marker = rest.split(" --", 1)[0].strip() or None
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s,;]+)$", req)
        if not m:
            raise ValueError(f"line {n}: {req!r} is not pinned as NAME==VERSION")
        entries.append((normalize(m.group(1)), m.group(3), marker))
    return entries


def parse_lock(text):
    """{normalized name: version} of every pinned line (markers not evaluated)."""
    return {name: version for name, version, _ in lock_entries(text)}


def applicable(entries):
    """(pins whose environment markers hold in this Python, lines skipped): markers are
    evaluated with ``packaging``, the library pip uses, which repro mounts at /repro/vendor
    for this step only (the job's own packages are not touched)."""
    sys.path.insert(0, "/repro/vendor")
    try:
        from packaging.markers import Marker
    except ImportError:
        Marker = None
    finally:
        sys.path.remove("/repro/vendor")
    pins, skipped = {}, []
    for name, version, marker in entries:
        if marker is None:
            pins[name] = version
        elif Marker is None:
            skipped.append(f"{name}=={version} ; {marker} (marker not evaluated: no packaging)")
        elif Marker(marker).evaluate():
            pins[name] = version
        else:
            skipped.append(f"{name}=={version} ; {marker}")
    return pins, skipped


def installed():
    """{normalized name: (name, version)} of every distribution on sys.path, first wins.

    What importlib.metadata.distributions() finds, read directly: its import alone (email,
    zipfile, csv...) costs ~70 ms in a container, this ~1 ms. Only the metadata headers
    (up to the first blank line) are read."""
    found = {}
    for entry in sys.path:
        try:
            listing = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in listing:
            if name.endswith(".dist-info"):
                path = os.path.join(entry, name, "METADATA")
            elif name.endswith(".egg-info"):
                path = os.path.join(entry, name)
                if os.path.isdir(path):
                    path = os.path.join(path, "PKG-INFO")
            else:
                continue
            headers = _headers(path)
            if headers.get("Name"):
                found.setdefault(normalize(headers["Name"]),
                                 (headers["Name"], headers.get("Version", "")))
    return found


def _headers(path):
    headers = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\r\n")
                if not line:
                    break
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version") and key not in headers:
                    headers[key] = value.strip()
    except OSError:
        pass
    return headers


def os_release():
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path) as f:
                pairs = (line.rstrip("\n").split("=", 1) for line in f if "=" in line)
                return {k: v.strip('"') for k, v in pairs}
        except OSError:
            continue
    return {}


def _implementation():
    """platform.python_implementation()'s answer, without importing platform (~15 ms)."""
    name = sys.implementation.name
    return {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython"}.get(name, name)


def check(pins, found):
    problems = []
    for name, version in sorted(pins.items()):
        have = found.get(name)
        if have is None:
            problems.append(f"{name}=={version} is pinned but not installed")
        elif have[1] != version:
            hint = ""
            if _local_build(have[1]):
                hint = (" (a distribution or local build, not the PyPI release; pin what the "
                        "image has: `repro image freeze IMAGE > requirements.lock`)")
            problems.append(f"{name}=={version} is pinned but {have[1]} is installed{hint}")
    return problems


def _local_build(version):
    """Debian's torch says 1.13.0a0+gitunknown: a local version or a distro tag."""
    low = version.lower()
    return "+" in low or any(t in low for t in ("dfsg", "debian", "ubuntu", "git"))


def facts():
    """What this container is: its OS, Python, distributions and, with a lock mounted, the
    lock checked against them."""
    found = installed()
    rel = os_release()
    env = {
        "os": rel.get("PRETTY_NAME", ""),
        "os_release": {k: rel[k] for k in ("ID", "VERSION_ID", "VERSION_CODENAME") if k in rel},
        "python": sys.version.split()[0],  # what platform.python_version() says
        "python_implementation": _implementation(),
        "packages": sorted(({"name": n, "version": v} for n, v in found.values()),
                           key=lambda p: p["name"].lower()),
    }
    problems, skipped = [], []
    if os.path.exists("/repro/lock.txt"):
        with open("/repro/lock.txt") as f:
            pins, skipped = applicable(lock_entries(f.read()))
        problems = check(pins, found)
    env["lock_problems"] = problems
    env["lock_skipped"] = skipped
    return env


def main(argv):
    if argv[:1] == ["--freeze"]:  # `repro image freeze`: the lock of what this image has
        for name, version in sorted(installed().values(), key=lambda nv: nv[0].lower()):
            print(f"{name}=={version}")
        return 0
    env = facts()
    if argv[:1] == ["--facts"]:  # repro, from outside: a throwaway container no job ran in
        print("REPRO-FACTS " + json.dumps(env))
        return 0
    problems = env["lock_problems"]
    with open(os.path.join(META, "env.json"), "w") as f:
        json.dump(env, f)
    if problems:
        for p in problems:
            print(f"repro: package lock mismatch: {p}", file=sys.stderr)
        return LOCK_MISMATCH
    if not argv:
        print("repro: no command given", file=sys.stderr)
        return 2
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        print(f"repro: cannot run {argv[0]!r}: {e.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
