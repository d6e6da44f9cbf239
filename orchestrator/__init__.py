"""repro: containerized, recorded, replayable ML training runs."""

import os

__version__ = "0.1.0"

# pydantic scans every installed distribution's entry points for plugins on its first model
# (~20 ms of every command); repro uses none
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
