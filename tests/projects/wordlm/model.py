import numpy as np


class BigramModel:
    """Embeddings and a softmax over the vocabulary: p(next word | word)."""

    def __init__(self, ntoken, ninp):
        self.emb = np.random.randn(ntoken, ninp) * 0.1
        self.out = np.random.randn(ninp, ntoken) * 0.1

    def forward(self, inputs):
        hidden = self.emb[inputs]
        logits = hidden @ self.out
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return hidden, probs / probs.sum(axis=1, keepdims=True)

    def loss(self, inputs, targets):
        _, probs = self.forward(inputs)
        return float(-np.log(probs[np.arange(len(targets)), targets] + 1e-12).mean())

    def step(self, inputs, targets, lr):
        hidden, probs = self.forward(inputs)
        n = len(targets)
        grad = probs.copy()
        grad[np.arange(n), targets] -= 1
        grad /= n
        d_out = hidden.T @ grad
        d_hidden = grad @ self.out.T
        self.out -= lr * d_out
        np.add.at(self.emb, inputs, -lr * d_hidden)
