import numpy as np


class CharModel:
    """Embeds the last ``block_size`` characters and predicts the next one."""

    def __init__(self, vocab_size, block_size, n_embd, rng):
        self.block_size = block_size
        self.wte = rng.normal(0, 0.1, (vocab_size, n_embd))
        self.head = rng.normal(0, 0.1, (n_embd * block_size, vocab_size))

    def _forward(self, idx):
        x = self.wte[idx].reshape(len(idx), -1)
        logits = x @ self.head
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return x, p / p.sum(axis=1, keepdims=True)

    def loss(self, idx, targets):
        _, p = self._forward(idx)
        return float(-np.log(p[np.arange(len(targets)), targets] + 1e-12).mean())

    def update(self, idx, targets, lr):
        x, p = self._forward(idx)
        g = p
        g[np.arange(len(targets)), targets] -= 1
        g /= len(targets)
        dx = (g @ self.head.T).reshape(len(idx), self.block_size, -1)
        self.head -= lr * (x.T @ g)
        np.add.at(self.wte, idx, -lr * dx)

    def state(self):
        return np.concatenate([self.wte.ravel(), self.head.ravel()])
