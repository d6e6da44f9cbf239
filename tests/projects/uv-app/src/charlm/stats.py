import numpy as np


def bigram_counts(words, alphabet):
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    counts = np.zeros((len(alphabet) + 1, len(alphabet) + 1), dtype=np.int64)
    for w in words:
        seq = [0, *(index[c] for c in w), 0]
        for a, b in zip(seq, seq[1:]):
            counts[a, b] += 1
    return counts


def nll(counts, words, alphabet, smoothing=1.0):
    probs = (counts + smoothing) / (counts + smoothing).sum(axis=1, keepdims=True)
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    total, n = 0.0, 0
    for w in words:
        seq = [0, *(index[c] for c in w), 0]
        for a, b in zip(seq, seq[1:]):
            total -= np.log(probs[a, b])
            n += 1
    return total / n
