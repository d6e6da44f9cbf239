"""Learn names one character at a time (a bigram model trained by gradient descent)."""
import argparse
import os
import sys
import time

import numpy as np
from tensorboardX import SummaryWriter


class CharDataset:
    def __init__(self, words):
        self.chars = sorted(set("".join(words)))
        self.stoi = {ch: i + 1 for i, ch in enumerate(self.chars)}  # 0: start and end
        self.itos = {i: ch for ch, i in self.stoi.items()}
        pairs = [(a, b) for w in words for a, b in zip([0, *self.encode(w)],
                                                        [*self.encode(w), 0])]
        self.x = np.array([a for a, _ in pairs])
        self.y = np.array([b for _, b in pairs])

    def vocab_size(self):
        return len(self.chars) + 1

    def encode(self, word):
        return [self.stoi[c] for c in word]


def create_datasets(input_file):
    words = [w.strip() for w in open(input_file).read().splitlines() if w.strip()]
    order = np.random.permutation(len(words))
    test_n = min(20, len(words) // 10)
    test = [words[i] for i in order[:test_n]]
    train = [words[i] for i in order[test_n:]]
    print(f"number of examples in the dataset: {len(words)}")
    return CharDataset(train), CharDataset(test), CharDataset(words)


def loss_of(logits, x, y):
    z = logits[x]
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return float(-np.log(p[np.arange(len(y)), y]).mean()), p


def sample(logits, itos, n, top_k):
    out = []
    for _ in range(n):
        ix, word = 0, ""
        while True:
            z = logits[ix] - logits[ix].max()
            if top_k > 0:
                z[np.argsort(z)[:-top_k]] = -np.inf
            p = np.exp(z) / np.exp(z).sum()
            ix = int(np.random.choice(len(p), p=p))
            if ix == 0 or len(word) > 20:
                break
            word += itos[ix]
        out.append(word)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Make More")
    parser.add_argument("--input-file", "-i", type=str, default="names.txt")
    parser.add_argument("--work-dir", "-o", type=str, default="out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sample-only", action="store_true")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--top-k", type=int, default=-1)
    parser.add_argument("--batch-size", "-b", type=int, default=32)
    parser.add_argument("--learning-rate", "-l", type=float, default=5.0)
    args = parser.parse_args()
    print(vars(args))

    np.random.seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    writer = SummaryWriter(log_dir=args.work_dir)
    train, test, everything = create_datasets(args.input_file)
    vocab = everything.vocab_size()
    logits = np.zeros((vocab, vocab))
    if args.resume or args.sample_only:
        logits = np.load(os.path.join(args.work_dir, "model.npy"))
    if args.sample_only:
        print("\n".join(sample(logits, everything.itos, 10, args.top_k)))
        sys.exit()
    best = None
    for step in range(args.max_steps):
        t0 = time.time()
        ix = np.random.randint(0, len(train.x), args.batch_size)
        loss, p = loss_of(logits, train.x[ix], train.y[ix])
        g = p
        g[np.arange(len(ix)), train.y[ix]] -= 1
        np.add.at(logits, train.x[ix], -args.learning_rate * g / len(ix))
        writer.add_scalar("Loss/train", loss, step)
        if step % 20 == 0:
            print(f"step {step} | loss {loss:.4f} | step time {(time.time() - t0) * 1000:.2f}ms")
        if step > 0 and step % 50 == 0:
            train_loss = loss_of(logits, train.x, train.y)[0]
            test_loss = loss_of(logits, test.x, test.y)[0]
            writer.add_scalar("Loss/test", test_loss, step)
            writer.flush()
            print(f"step {step} train loss: {train_loss:.4f} test loss: {test_loss:.4f}")
            if best is None or test_loss < best:
                best = test_loss
                np.save(os.path.join(args.work_dir, "model.npy"), logits)
    with open(os.path.join(args.work_dir, "samples.txt"), "w") as f:
        f.write("\n".join(sample(logits, everything.itos, 10, args.top_k)) + "\n")
    writer.close()
