"""A job that reproduces only with one thread: asynchronous SGD ("Hogwild"-style) on a small
linear regression. Each worker thread reads the shared weights, computes a minibatch
gradient and applies it; with two threads, which weights a gradient was computed from
depends on how the threads interleave, so the weights and the loss curve move from run to
run. With one thread the order, and every bit, is fixed. The data and its seed are fixed.

`repro diagnose` names the thread count (identical with one thread) and tells a race from a
count effect by running the recorded thread count twice.
"""

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import repro

workers = int(os.environ.get("OMP_NUM_THREADS", "1"))  # as many as repro pins
rng = np.random.default_rng(repro.run_info()["seed"])
X = rng.standard_normal((4_000, 16))
y = X @ rng.standard_normal(16) + 0.1 * rng.standard_normal(4_000)
w = np.zeros(16)
lock = threading.Lock()
steps = []


def step(i):
    global w
    rows = slice(40 * (i % 100), 40 * (i % 100) + 40)
    with lock:
        seen = w.copy()
    grad = 2 * X[rows].T @ (X[rows] @ seen - y[rows]) / 40
    time.sleep(0.0005)  # the threads wake in an order the scheduler picks
    with lock:
        w = w - 0.01 * grad
        steps.append(float(np.mean((X @ w - y) ** 2)))


with ThreadPoolExecutor(max_workers=workers) as pool:
    list(pool.map(step, range(300)))
for i, loss in enumerate(steps):
    repro.log_metric("loss", loss, step=i)
out = repro.output_dir()
np.save(out / "weights.npy", w)
(out / "metrics.json").write_text(json.dumps({"final_loss": steps[-1]}))
print(f"{workers} thread(s): final loss {steps[-1]!r}")
