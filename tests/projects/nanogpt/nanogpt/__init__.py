"""A small character-level model."""
from nanogpt.config import TrainConfig

__all__ = ["TrainConfig"]
