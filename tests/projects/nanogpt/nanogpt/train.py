"""Train the character model: python -m nanogpt.train [--dataset NAME] [--max-iters N]."""
import argparse
import os
import time

import numpy as np

from nanogpt.config import TrainConfig
from nanogpt.model import CharModel


def get_batch(data, cfg, rng):
    ix = rng.integers(0, len(data) - cfg.block_size - 1, cfg.batch_size)
    x = np.stack([data[i:i + cfg.block_size] for i in ix])
    return x, data[ix + cfg.block_size]


def main():
    defaults = TrainConfig()
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="shakespeare_char")
    parser.add_argument("--out-dir", default="out")
    parser.add_argument("--max-iters", type=int, default=defaults.max_iters)
    parser.add_argument("--eval-interval", type=int, default=defaults.eval_interval)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    args = parser.parse_args()
    cfg = TrainConfig(max_iters=args.max_iters, eval_interval=args.eval_interval,
                      learning_rate=args.learning_rate, batch_size=args.batch_size)

    text = open(os.path.join("data", args.dataset, "input.txt"), encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text])
    n = int(0.9 * len(data))
    splits = {"train": data[:n], "val": data[n:]}

    rng = np.random.default_rng()  # seeded by nothing: the run's seed, under repro
    model = CharModel(len(chars), cfg.block_size, cfg.n_embd, rng)
    os.makedirs(args.out_dir, exist_ok=True)
    for it in range(cfg.max_iters + 1):
        if it % cfg.eval_interval == 0:
            losses = {k: np.mean([model.loss(*get_batch(v, cfg, rng))
                                  for _ in range(cfg.eval_iters)]) for k, v in splits.items()}
            print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        t0 = time.time()
        x, y = get_batch(splits["train"], cfg, rng)
        lossf = model.loss(x, y)
        model.update(x, y, cfg.learning_rate)
        if it % 10 == 0:
            print(f"iter {it}: loss {lossf:.4f}, time {(time.time() - t0) * 1000:.2f}ms")
    np.save(os.path.join(args.out_dir, "ckpt.npy"), model.state())


if __name__ == "__main__":
    main()
