"""Fit y = a x + b by gradient descent to points drawn around a known line."""
import argparse
import json
import os

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--results", default="results")
    args = parser.parse_args()
    rng = np.random.default_rng()
    x = rng.uniform(-1, 1, args.points)
    y = 2.5 * x - 0.7 + rng.normal(0, args.noise, args.points)
    a = b = 0.0
    for epoch in range(args.epochs):
        err = a * x + b - y
        loss = float(np.mean(err ** 2))
        a -= args.lr * 2 * float(np.mean(err * x))
        b -= args.lr * 2 * float(np.mean(err))
        if epoch % 10 == 0:
            print(f"epoch {epoch:3d} mse {loss:.6f}")
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "line.json"), "w") as f:
        json.dump({"a": a, "b": b}, f)
    print(f"fit a={a:.4f} b={b:.4f} mse {loss:.6f}")


if __name__ == "__main__":
    main()
