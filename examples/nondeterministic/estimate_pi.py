"""A job that does NOT reproduce: it estimates pi from random samples drawn from a generator
seeded by fresh OS entropy (os.urandom: nothing repro can seed), and stamps the wall clock.

`repro verify` on its runs exits with the "differs" code and names samples.txt;
`repro diagnose` names both causes: line 1 of samples.txt moves with the wall clock, the
samples with OS entropy. With `--tolerance metrics.pi_estimate=0.05` the metric comparison
passes as within-tolerance.
"""

import json
import os
import time

import numpy as np
import repro

rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))  # deliberately unseeded
points = rng.random((200_000, 2))
inside = (points**2).sum(axis=1) <= 1.0
estimate = 4.0 * inside.mean()
out = repro.output_dir()
(out / "samples.txt").write_text(f"drawn at {time.time()!r}\n{points[:5]!r}\n")
(out / "metrics.json").write_text(json.dumps({"pi_estimate": round(float(estimate), 2)}))
print(f"pi ~ {estimate:.5f}")
