from dataclasses import dataclass


@dataclass
class TrainConfig:
    block_size: int = 4
    n_embd: int = 16
    batch_size: int = 16
    learning_rate: float = 0.3
    max_iters: int = 60
    eval_interval: int = 20
    eval_iters: int = 5
