"""Opening inputs as byte streams, decompressing ``.zst``/``.gz``, checked to their end.

A compressed input cut short must be an error naming the file, never a silent short dataset: gzip
checks its trailer (length and CRC) itself; for zstd every frame is decoded with its own
decompression object, and the stream fails at its end unless the last frame was complete (a cut at
a block boundary otherwise ends the stream quietly).
"""
from __future__ import annotations

import gzip
import io
from typing import BinaryIO

from mfcore.data.preprocess.errors import InputError

CHUNK = 1 << 20


class CountingFile(io.RawIOBase):
    """Wraps the on-disk file so progress can be reported in input bytes, compressed or not."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.consumed += n or 0
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


class ZstdFrames(io.RawIOBase):
    """The concatenated frames of a zstd file; raises InputError when the file ends mid-frame."""

    def __init__(self, source: BinaryIO, path: str):
        import zstandard

        self.source, self.path = source, path
        self.zstd = zstandard.ZstdDecompressor()
        self.frame = self.zstd.decompressobj()
        self.in_frame = False   # bytes of the current frame were fed and it has not ended
        self.pending, self.at = b"", 0   # decompressed bytes not yet returned, from `at`

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            self.in_frame = True
            out.append(self.frame.decompress(data))
            if not self.frame.eof:
                break
            data, self.in_frame = self.frame.unused_data, False
            self.frame = self.zstd.decompressobj()
        return b"".join(out)

    def readinto(self, buffer) -> int:
        while self.at == len(self.pending):
            data = self.source.read(CHUNK)
            if not data:
                if self.in_frame:
                    raise InputError(f"{self.path}: truncated zstd archive (the last frame is incomplete)")
                return 0
            self.pending, self.at = self._feed(data), 0
        n = min(len(buffer), len(self.pending) - self.at)
        buffer[:n] = memoryview(self.pending)[self.at:self.at + n]
        self.at += n
        return n

    def close(self) -> None:
        self.source.close()
        super().close()


def open_binary(path: str) -> tuple:
    """Opens ``path`` for reading bytes, decompressing ``.zst``/``.gz`` as a stream.

    Returns ``(stream, counter)``; ``counter.consumed`` is the number of on-disk bytes read so far.
    """
    try:
        counter = CountingFile(open(path, "rb"))
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None
    name = path.lower()
    if name.endswith((".zst", ".zstd")):
        return io.BufferedReader(ZstdFrames(io.BufferedReader(counter, CHUNK), path), CHUNK), counter
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=io.BufferedReader(counter, CHUNK)), counter
    return io.BufferedReader(counter, CHUNK), counter
