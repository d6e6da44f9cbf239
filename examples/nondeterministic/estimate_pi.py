"""A job that does NOT reproduce: it estimates pi from unseeded random samples (fresh OS
entropy on every run) and stamps the wall clock, both things repro does not control.

`repro verify` on its runs exits with the "differs" code and names samples.txt; with
`--tolerance metrics.pi_estimate=0.05` the metric comparison passes as within-tolerance.
"""

import json
import time

import numpy as np
import repro

rng = np.random.default_rng()  # deliberately unseeded: ignores repro.seed_everything()
points = rng.random((200_000, 2))
inside = (points**2).sum(axis=1) <= 1.0
estimate = 4.0 * inside.mean()
out = repro.output_dir()
(out / "samples.txt").write_text(f"drawn at {time.time()!r}\n{points[:5]!r}\n")
(out / "metrics.json").write_text(json.dumps({"pi_estimate": round(float(estimate), 2)}))
print(f"pi ~ {estimate:.5f}")
