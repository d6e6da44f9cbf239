"""Train a two-layer MLP on data/xor.csv; save the weights."""
import os

import click
import numpy as np


def load(path):
    rows = np.loadtxt(path, delimiter=",", skiprows=1)
    return rows[:, :2], rows[:, 2:]


@click.command()
@click.option("--data", default="data/xor.csv", show_default=True, help="CSV: x1,x2,label")
@click.option("--epochs", default=40, type=int, show_default=True)
@click.option("--hidden", default=8, type=int)
@click.option("--lr", "--learning-rate", default=0.5, type=float)
@click.option("--out", default="weights", help="folder for the weights")
@click.option("--verbose", is_flag=True)
def main(data, epochs, hidden, lr, out, verbose):
    x, y = load(data)
    w1 = np.random.randn(2, hidden) * 0.5
    w2 = np.random.randn(hidden, 1) * 0.5
    for epoch in range(1, epochs + 1):
        h = np.tanh(x @ w1)
        p = 1 / (1 + np.exp(-(h @ w2)))
        loss = float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9)))
        acc = float(((p > 0.5) == y).mean())
        g = (p - y) / len(y)
        w2_grad = h.T @ g
        w1_grad = x.T @ ((g @ w2.T) * (1 - h ** 2))
        w1 -= lr * w1_grad
        w2 -= lr * w2_grad
        if epoch % 10 == 0 or verbose:
            click.echo(f"epoch {epoch} loss {loss:.5f} acc {acc:.3f}")
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "w1.npy"), w1)
    np.save(os.path.join(out, "w2.npy"), w2)


if __name__ == "__main__":
    main()
