"""repro: containerized, recorded, replayable ML training runs."""

__version__ = "0.1.0"
