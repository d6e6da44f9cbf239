#!/bin/sh
# repro's container entry: capture the environment, check the lock, then exec the job.
if command -v python3 >/dev/null 2>&1; then
  exec python3 /repro/lib/repro_boot.py "$@"
fi
# No Python in the image: record the OS only; a package lock cannot be checked.
if [ -s /repro/lock.txt ]; then
  echo "repro: the spec pins packages, but this image has no python3 to check them" >&2
  exit 86
fi
cp /etc/os-release /repro/meta/os-release 2>/dev/null
exec "$@"
