"""Word-level language model on a small corpus (numpy)."""
import argparse
import math
import time

import numpy as np

import data
import model

parser = argparse.ArgumentParser(description="word-level language model")
parser.add_argument("--data", type=str, default="./data/tiny", help="location of the corpus")
parser.add_argument("--emsize", type=int, default=16, help="size of word embeddings")
parser.add_argument("--lr", type=float, default=0.5, help="initial learning rate")
parser.add_argument("--epochs", type=int, default=3, help="upper epoch limit")
parser.add_argument("--batch_size", type=int, default=32, metavar="N", help="batch size")
parser.add_argument("--seed", type=int, default=1111, help="random seed")
parser.add_argument("--log-interval", type=int, default=5, metavar="N", help="report interval")
parser.add_argument("--save", type=str, default="model.npy", help="path to save the model")
parser.add_argument("--dry-run", action="store_true", help="verify the code and the model")
args = parser.parse_args()

np.random.seed(args.seed)
corpus = data.Corpus(args.data)
ntokens = len(corpus.dictionary)
lm = model.BigramModel(ntokens, args.emsize)


def batches(ids, size):
    ids = np.asarray(ids)
    for i in range(0, len(ids) - 1, size):
        chunk = ids[i:i + size + 1]
        if len(chunk) > 1:
            yield chunk[:-1], chunk[1:]


def evaluate(ids):
    losses = [lm.loss(x, y) * len(y) for x, y in batches(ids, args.batch_size)]
    return sum(losses) / (len(ids) - 1)


lr = args.lr
for epoch in range(1, args.epochs + 1):
    start = time.time()
    total, n = 0.0, 0
    for i, (x, y) in enumerate(batches(corpus.train, args.batch_size), 1):
        total += lm.loss(x, y)
        n += 1
        lm.step(x, y, lr)
        if i % args.log_interval == 0:
            cur = total / n
            elapsed = (time.time() - start) * 1000 / n
            print(f"| epoch {epoch:3d} | {i:5d} batches | lr {lr:02.2f} | ms/batch {elapsed:5.2f} "
                  f"| loss {cur:5.2f} | ppl {math.exp(cur):8.2f}")
            total, n = 0.0, 0
    val_loss = evaluate(corpus.valid)
    print("-" * 89)
    print(f"| end of epoch {epoch:3d} | time: {time.time() - start:5.2f}s | valid loss "
          f"{val_loss:5.2f} | valid ppl {math.exp(val_loss):8.2f}")
    print("-" * 89)
    lr /= 1.5

np.save(args.save, np.concatenate([lm.emb.ravel(), lm.out.ravel()]))
test_loss = evaluate(corpus.test)
print("=" * 89)
print(f"| End of training | test loss {test_loss:5.2f} | test ppl {math.exp(test_loss):8.2f}")
print("=" * 89)
