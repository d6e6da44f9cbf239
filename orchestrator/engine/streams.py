"""The engine's attach stream decoded by hand: Docker's multiplexed frames. The SDK reads
each frame with two small reads; reading in bulk and decoding here made a job printing
200,000 lines stream in 1.9 s instead of 3.2 s (BENCHMARKS.md), reading the attach stream
rather than the log endpoint's chunked re-read of the log file in 1.08 s. A pure function
over bytes, tested with every cut of the reads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def demux(stream: Iterable[bytes]) -> Iterator[bytes]:
    """The payloads of the engine's multiplexed log frames (8-byte header: stream, 3 zero
    bytes, big-endian length), stdout and stderr merged in order; every whole frame in each
    piece, joined."""
    buf = b""
    for piece in stream:
        buf += piece
        out: list[bytes] = []
        add, have = out.append, len(buf)
        pos = 0
        while have - pos >= 8:
            start = pos + 8
            end = start + int.from_bytes(buf[pos + 4:start], "big")
            if end > have:
                break
            add(buf[start:end])
            pos = end
        buf = buf[pos:]
        if out:
            yield b"".join(out)
