"""Generate the digits data set: 8x8 images of the digits 0-9 (pixel values 0..16), like the
classic UCI optical digits, drawn from a 5x7 font with random shifts, stroke dropout, thickening
and pixel noise. Deterministic: the same numpy gives the same bytes (legacy RandomState).

    python3 examples/digits/make_data.py data/digits.npy

Row layout: 64 pixel values then the label, uint8, shape (N, 65).
"""

import sys

import numpy as np

FONT = {  # 5 wide x 7 high
    0: ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    1: ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    2: ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    3: ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
    4: ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    5: ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    6: ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    7: ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    8: ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    9: ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
}


def glyph(digit):
    return np.array([[int(c) for c in row] for row in FONT[digit]], dtype=np.float64)


def sample(rng, digit):
    img = np.zeros((8, 8))
    g = glyph(digit)
    if rng.rand() < 0.5:  # thicken strokes to the right
        g = np.clip(g + np.roll(g, 1, axis=1) * (rng.rand(*g.shape) < 0.5), 0, 1)
    g = g * (rng.rand(*g.shape) > 0.08)  # stroke dropout
    dy, dx = rng.randint(0, 2), rng.randint(0, 4)
    img[dy:dy + 7, dx:dx + 5] = np.maximum(img[dy:dy + 7, dx:dx + 5], g[:, : min(5, 8 - dx)])
    img = img * rng.uniform(10, 16) + rng.normal(0, 1.5, img.shape)
    return np.clip(np.rint(img), 0, 16).astype(np.uint8)


def make(n=2000, seed=20261126):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 10, size=n)
    rows = [np.append(sample(rng, int(d)).ravel(), d) for d in labels]
    return np.array(rows, dtype=np.uint8)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "digits.npy"
    np.save(out, make())
    print(f"wrote {out}")
