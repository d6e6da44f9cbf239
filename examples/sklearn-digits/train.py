"""Fit a small MLP to scikit-learn's bundled digits and report its loss and test accuracy.

An ordinary script, as a user brings it: argparse flags, no seed anywhere (the split and the
network's initial weights come from numpy's global random state), prints its numbers, saves
the first layer's weights. repro runs it unchanged: `repro init` wrote repro.yaml, and
repro's runtime seeds numpy when the script imports it.
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=32, help="hidden units")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=args.test_size)
    model = MLPClassifier(hidden_layer_sizes=(args.hidden,), learning_rate_init=args.lr)
    classes = np.unique(y)
    for epoch in range(args.epochs):
        model.partial_fit(X_train, y_train, classes=classes)
        print(f"epoch {epoch} loss={model.loss_:.6f}")
    print(f"test accuracy: {model.score(X_test, y_test):.4f}")
    np.save("weights.npy", model.coefs_[0])


if __name__ == "__main__":
    main()
