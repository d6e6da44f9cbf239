"""Fit a small PyTorch MLP to a synthetic regression task and report its loss.

An ordinary script, as a user brings it: argparse flags, no seed anywhere (the data and the
initial weights come from torch's global generator, the batches from a shuffling DataLoader),
prints its loss each epoch, saves the first layer's weights. It uses the GPU when there is
one. repro runs it unchanged: `repro init --base python-torch` wrote repro.yaml, and repro's
runtime seeds torch and turns on its deterministic algorithms when the script imports it.
"""

import argparse

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2048)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.randn(args.samples, 16)
    true_w = torch.randn(16, 1)
    y = torch.tanh(x @ true_w) + 0.05 * torch.randn(args.samples, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)

    model = nn.Sequential(nn.Linear(16, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 1))
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.MSELoss()
    print(f"device {device}, torch {torch.__version__}")
    for epoch in range(args.epochs):
        total = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        print(f"epoch {epoch} loss={total / args.samples:.6f}")
    np.save("weights.npy", model[0].weight.detach().cpu().numpy())


if __name__ == "__main__":
    main()
