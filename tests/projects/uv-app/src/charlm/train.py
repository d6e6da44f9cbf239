"""Count bigrams on a training split and report the loss on both splits."""
import argparse
import json
import os

import numpy as np

from charlm.stats import bigram_counts, nll


def main() -> None:
    parser = argparse.ArgumentParser(prog="charlm-train")
    parser.add_argument("--names", default="data/names.txt")
    parser.add_argument("--smoothing", type=float, default=1.0)
    parser.add_argument("--holdout", type=float, default=0.1)
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args()
    words = open(args.names).read().split()
    alphabet = sorted(set("".join(words)))
    order = np.random.default_rng().permutation(len(words))
    cut = int(len(words) * (1 - args.holdout))
    train = [words[i] for i in order[:cut]]
    val = [words[i] for i in order[cut:]]
    counts = bigram_counts(train, alphabet)
    result = {"train_loss": nll(counts, train, alphabet, args.smoothing),
              "val_loss": nll(counts, val, alphabet, args.smoothing)}
    print(f"train loss {result['train_loss']:.5f} val loss {result['val_loss']:.5f}")
    os.makedirs(args.artifacts, exist_ok=True)
    np.save(os.path.join(args.artifacts, "counts.npy"), counts)
    with open(os.path.join(args.artifacts, "result.json"), "w") as f:
        json.dump(result, f, sort_keys=True)


if __name__ == "__main__":
    main()
