"""Files mounted read-only into every run container at /repro/lib (zero dependencies).

- ``boot.sh``: the container's entry; runs ``repro_boot.py`` when python3 exists.
- ``repro_boot.py``: records the container environment, checks the package lock, execs the job.
- ``repro.py``: the helper a job may import: ``seed_everything``, ``log_metric``, ``output_dir``.
"""

from pathlib import Path

import packaging

RUNTIME_DIR = Path(__file__).resolve().parent
# `packaging`, pure Python, mounted for the boot step to evaluate a lock's markers
VENDOR_PACKAGING = Path(packaging.__file__).resolve().parent
