"""The smallest repro job: say hello and leave one output file."""

from pathlib import Path

print("hello from repro")
Path("/repro/outputs/hello.txt").write_text("hello\n")
