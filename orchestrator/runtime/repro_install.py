"""Install a hash-pinned lock into an image being built, or write one.

repro runs this as root in a throwaway container of the recipe's base image; what it installs
is committed as the new image. The build's settings (proxies, the CA bundle's path) come in a
JSON file on a mount, never as the container's environment, so nothing of them lands in the
image's config, a layer or a bundle.

    python3 repro_install.py install BUILD.json   # pip install --require-hashes -r LOCK
    python3 repro_install.py lock BUILD.json      # resolve requirements, print a hashed lock

Exit codes: 0 done, 2 this python has no pip, 3 pip failed (its output says why).
"""

import json
import os
import subprocess
import sys
import tempfile


def pip_env(config):
    env = dict(os.environ)
    env.update(config.get("env") or {})
    env.update({"PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_NO_INPUT": "1", "PIP_ROOT_USER_ACTION": "ignore",
                "PYTHONDONTWRITEBYTECODE": "1"})
    epoch = config.get("epoch")
    if epoch is not None:  # .pyc files by hash, not by the install's clock
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    return env


def has_pip():
    try:
        import pip  # noqa: F401
    except ImportError:
        print(f"repro: {sys.executable} has no pip; build on `base: python` (a venv with pip) "
              "or install python3-venv in the base", flush=True)
        return False
    return True


def newer_to_epoch(roots, since, epoch):
    """Every file and folder under ``roots`` changed since ``since`` gets mtime ``epoch``:
    the committed layer then carries no clock of this build."""
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                try:
                    if os.lstat(path).st_mtime >= since:
                        os.utime(path, (epoch, epoch), follow_symlinks=False)
                except (OSError, NotImplementedError):
                    pass
        try:
            os.utime(root, (epoch, epoch))
        except OSError:
            pass


def install(config):
    if not has_pip():
        return 2
    import time

    since = time.time() - 1
    code = subprocess.call([sys.executable, "-m", "pip", "install", "--require-hashes",
                            "--no-warn-script-location", "-r", config["lock"]],
                           env=pip_env(config))
    if code != 0:
        return 3
    if config.get("epoch") is not None:
        newer_to_epoch([sys.prefix, "/tmp"], since, int(config["epoch"]))  # pip's temp
    return 0


def lock(config):
    """Resolve ``config['requirements']`` for this image's Python and platform and print what
    pip would install (pip's --report, no install): name, version, sha256 and URL of each
    distribution. What the image already has (a base with Debian's torch) is not listed."""
    if not has_pip():
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        code = subprocess.call([sys.executable, "-m", "pip", "install", "--dry-run",
                                "--quiet", "--report", report,
                                "-r", config["requirements"]],
                               env=pip_env(config), stdout=sys.stderr)
        if code != 0:
            return 3
        with open(report) as f:
            items = json.load(f).get("install", [])
    out = []
    for item in items:
        meta = item.get("metadata") or {}
        info = item.get("download_info") or {}
        archive = info.get("archive_info") or {}
        hashes = archive.get("hashes") or {}
        sha = hashes.get("sha256")
        if sha is None and str(archive.get("hash", "")).startswith("sha256="):
            sha = archive["hash"].split("=", 1)[1]
        out.append({"name": meta.get("name"), "version": meta.get("version"), "sha256": sha,
                    "url": info.get("url")})
    print("REPRO-LOCK " + json.dumps(out), flush=True)
    return 0


def main():
    action, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        config = json.load(f)
    return {"install": install, "lock": lock}[action](config)


if __name__ == "__main__":
    sys.exit(main())
