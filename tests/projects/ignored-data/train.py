"""Logistic regression on data/ (written by prepare.py); checkpoints each epoch."""
import argparse
import os

import numpy as np


def load(folder, split):
    return (np.load(os.path.join(folder, f"{split}_x.npy")),
            np.load(os.path.join(folder, f"{split}_y.npy")))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    x, y = load(args.data_dir, "train")
    tx, ty = load(args.data_dir, "test")
    w = np.zeros(x.shape[1])
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    for epoch in range(args.epochs):
        order = np.random.permutation(len(x))
        for i in range(0, len(x), args.batch_size):
            idx = order[i:i + args.batch_size]
            p = 1 / (1 + np.exp(-x[idx] @ w))
            w -= args.lr * x[idx].T @ (p - y[idx]) / len(idx)
        p = 1 / (1 + np.exp(-x @ w))
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        acc = float(((1 / (1 + np.exp(-tx @ w)) > 0.5) == ty).mean())
        print(f"epoch {epoch + 1}/{args.epochs} train loss {loss:.5f} test acc {acc:.3f}")
        if (epoch + 1) % 10 == 0:
            np.save(os.path.join(args.checkpoint_dir, f"epoch_{epoch + 1}.npy"), w)


if __name__ == "__main__":
    main()
