"""Fit a linear model by minibatch SGD with momentum, checkpointing as it goes, and resume
from any checkpoint exactly where it left off.

The pattern a segment verify needs (`repro verify RUN --segment 300`): a checkpoint holds
everything the steps after it depend on (the weights, the optimiser's velocity, the step and
the random generator's state), is written whole or not at all (a temporary file, then a
rename), and `--resume PATH` restores all of it. The loss is logged with its step, so a
resumed run's steps go on from the checkpoint's.

    python train.py --steps 1000 --every 100          # writes checkpoints/step_100.npz, ...
    python train.py --resume checkpoints/step_300.npz  # goes on from step 300

`--forget-rng` is the classic mistake, kept here to show what a segment verify catches: the
generator is not restored, so the minibatches after a resume are not the ones the original
run drew, and the next checkpoint's weights differ.
"""

import argparse
import json
import os
import time

import numpy as np

try:
    import repro  # present in a repro run; the script runs without it too
except ImportError:
    repro = None


def log(step, loss):
    if repro is not None:
        repro.log_metric("loss", loss, step=step)
    print(f"step {step} loss {loss:.10f}", flush=True)


def save(path, step, w, velocity, rng):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, w=w, velocity=velocity, step=np.array(step),
                 rng=np.array(json.dumps(rng.bit_generator.state)))
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="checkpoint every N steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--resume", help="a checkpoint to go on from")
    parser.add_argument("--forget-rng", action="store_true",
                        help="do not restore the generator on resume (a bug, on purpose)")
    parser.add_argument("--pace", type=float, default=0.0,
                        help="seconds each step sleeps: stands in for a real step's time")
    args = parser.parse_args()

    data = np.random.default_rng(1234)  # the data set: the same in every run
    x = data.normal(size=(4096, 16))
    y = x @ data.normal(size=16) + 0.1 * data.normal(size=4096)

    rng = np.random.default_rng(7)  # the minibatches
    w, velocity, start = np.zeros(16), np.zeros(16), 0
    if args.resume:
        with np.load(args.resume, allow_pickle=False) as ck:
            w, velocity, start = ck["w"], ck["velocity"], int(ck["step"])
            if not args.forget_rng:
                rng.bit_generator.state = json.loads(str(ck["rng"]))
        print(f"resumed from {args.resume} at step {start}", flush=True)

    for step in range(start + 1, args.steps + 1):
        idx = rng.integers(0, len(x), size=args.batch)
        err = x[idx] @ w - y[idx]
        grad = x[idx].T @ err / args.batch
        velocity = 0.9 * velocity - args.lr * grad
        w = w + velocity
        log(step, float(np.mean(err ** 2)))
        if args.pace:
            time.sleep(args.pace)
        if step % args.every == 0:
            save(f"checkpoints/step_{step}.npz", step, w, velocity, rng)
    np.save("weights.npy", w)


if __name__ == "__main__":
    main()
