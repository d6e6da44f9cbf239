"""A seeded numpy MLP on the digits data set: the example repro job.

Reads the pinned input `digits`, trains a one-hidden-layer MLP with minibatch SGD, logs a
learning curve through repro's helper, writes its weights (.npy, byte-stable) and metrics.json.
"""

import argparse
import json

import numpy as np
import repro


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    seed = repro.seed_everything()
    rng = np.random.default_rng(seed)
    data = np.load(repro.input_path("digits"))
    x = data[:, :64].astype(np.float64) / 16.0
    y = data[:, 64].astype(np.int64)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    xtr, ytr, xva, yva = x[:split], y[:split], x[split:], y[split:]
    repro.log_param("n_train", len(xtr))

    w1 = rng.normal(0, np.sqrt(2 / 64), (64, args.hidden))
    b1 = np.zeros(args.hidden)
    w2 = rng.normal(0, np.sqrt(1 / args.hidden), (args.hidden, 10))
    b2 = np.zeros(10)

    def forward(xb):
        h = np.tanh(xb @ w1 + b1)
        return h, softmax(h @ w2 + b2)

    for epoch in range(args.epochs):
        perm = rng.permutation(len(xtr))
        losses = []
        for i in range(0, len(xtr), args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb, yb = xtr[idx], ytr[idx]
            h, p = forward(xb)
            losses.append(-np.log(p[np.arange(len(yb)), yb] + 1e-12).mean())
            g = p.copy()
            g[np.arange(len(yb)), yb] -= 1
            g /= len(yb)
            gh = (g @ w2.T) * (1 - h**2)
            w2 -= args.lr * h.T @ g
            b2 -= args.lr * g.sum(axis=0)
            w1 -= args.lr * xb.T @ gh
            b1 -= args.lr * gh.sum(axis=0)
        _, pva = forward(xva)
        val_acc = float((pva.argmax(axis=1) == yva).mean())
        repro.log_metric("loss", float(np.mean(losses)), step=epoch)
        repro.log_metric("val_accuracy", val_acc, step=epoch)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  loss {np.mean(losses):.4f}  "
              f"val_accuracy {val_acc:.4f}")

    _, pva = forward(xva)
    out = repro.output_dir()
    (out / "weights").mkdir(exist_ok=True)
    for name, arr in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        np.save(out / "weights" / f"{name}.npy", arr)
    metrics = {"accuracy": float((pva.argmax(axis=1) == yva).mean()),
               "loss": float(-np.log(pva[np.arange(len(yva)), yva] + 1e-12).mean())}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(f"done: accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}")


if __name__ == "__main__":
    main()
