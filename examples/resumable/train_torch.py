"""The same resumable pattern in PyTorch: a small MLP, SGD with momentum, a checkpoint
(``torch.save``) every --every steps holding the model's and the optimiser's state, the step
and the minibatch generator's state; `--resume PATH` restores all of it.

    python train_torch.py --steps 600 --every 100
    python train_torch.py --resume checkpoints/step_300.pt

`--forget-rng` skips restoring the generator (a bug, on purpose: a segment verify names the
tensors of the next checkpoint that differ).
"""

import argparse
import os

import torch
from torch import nn

try:
    import repro  # present in a repro run; the script runs without it too
except ImportError:
    repro = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resume")
    parser.add_argument("--forget-rng", action="store_true")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = torch.Generator().manual_seed(1234)  # the data set: the same in every run
    x = torch.randn(2048, 16, generator=data)
    y = torch.tanh(x @ torch.randn(16, 1, generator=data))
    x, y = x.to(device), y.to(device)
    batches = torch.Generator().manual_seed(7)  # the minibatches (drawn on the CPU)

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start = 0
    if args.resume:
        ck = torch.load(args.resume, map_location=device)  # the job's own checkpoint
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        start = int(ck["step"])
        if not args.forget_rng:
            batches.set_state(ck["batches"].cpu())
        print(f"resumed from {args.resume} at step {start}", flush=True)

    loss_fn = nn.MSELoss()
    for step in range(start + 1, args.steps + 1):
        idx = torch.randint(0, len(x), (args.batch,), generator=batches).to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        if repro is not None:
            repro.log_metric("loss", loss.item(), step=step)
        print(f"step {step} loss {loss.item():.8f}", flush=True)
        if step % args.every == 0:
            os.makedirs("checkpoints", exist_ok=True)
            tmp = f"checkpoints/step_{step}.pt.tmp"
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "step": step, "batches": batches.get_state()}, tmp)
            os.replace(tmp, f"checkpoints/step_{step}.pt")


if __name__ == "__main__":
    main()
