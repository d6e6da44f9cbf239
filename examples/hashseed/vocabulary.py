"""A job whose only nondeterminism is Python's hash randomisation: it seeds its generator,
but builds its vocabulary by iterating a set of strings, whose order depends on
PYTHONHASHSEED (random in every process unless fixed; `determinism: off` leaves it random).

`repro diagnose` names hash randomisation: identical once PYTHONHASHSEED is fixed.
"""

import json
import random

import repro

random.seed(repro.run_info()["seed"])
words = {"loss", "accuracy", "epoch", "batch", "learning", "rate", "momentum", "weight",
         "decay", "dropout", "layer", "tensor", "gradient", "optimizer", "schedule",
         "warmup", "checkpoint", "dataset", "shard", "vocab"}
vocabulary = {word: index for index, word in enumerate(words)}  # set order: the hash seed's
embedding = {word: round(random.gauss(0, 1), 6) for word in vocabulary}
out = repro.output_dir()
(out / "vocabulary.json").write_text(json.dumps(vocabulary, indent=1))
(out / "embedding.txt").write_text("".join(f"{w} {v}\n" for w, v in embedding.items()))
print(f"{len(vocabulary)} words, first {next(iter(vocabulary))}")
