"""Write the data set to data/ (features and labels, train and test)."""
import os

import numpy as np

rng = np.random.default_rng(2024)
os.makedirs("data", exist_ok=True)
w = rng.normal(size=6)
for split, n in (("train", 500), ("test", 100)):
    x = rng.normal(size=(n, 6))
    y = (x @ w + rng.normal(0, 0.5, n) > 0).astype(np.int64)
    np.save(f"data/{split}_x.npy", x)
    np.save(f"data/{split}_y.npy", y)
print("wrote data/")
