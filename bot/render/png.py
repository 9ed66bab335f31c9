"""PNG encoding for many pictures that share most of their rows (a task's posters differ from its
layer only in the rows of the member's QR code, avatar and name): the shared rows are filtered and
compressed once, and each picture compresses only its own rows.

A PNG's image data is one zlib stream of filtered rows. Deflate segments compressed independently,
each ending on a full flush, join into one valid stream (as pigz does), and the Adler-32 checksums
of the pieces combine, so a band of rows compressed once fits into every picture. A row's filter
here is "up" (the difference from the row above), except the first row of a band: "sub" (from the
pixel to its left), so a band never depends on the rows before it. Lossless: the pixels are exactly
the picture's (tests decode and compare); Pillow's own encoder tries every filter on every row and
took ~50 ms of a 1080x1920 poster.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

LEVEL = 3  # zlib: 1-3 cost about the same on posters; 3 is ~10 % smaller
ADLER = 65521
Rows = tuple[int, int]  # top, bottom (exclusive)


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two pieces joined, from theirs (zlib's adler32_combine, which Python lacks)."""
    rem = second_length % ADLER
    low = ((first & 0xFFFF) + (second & 0xFFFF) + ADLER - 1) % ADLER
    high = (rem * (first & 0xFFFF) + (first >> 16) + (second >> 16) + ADLER - rem) % ADLER
    return low | high << 16


def filtered(rows: np.ndarray) -> bytes:
    """`rows` (height x width x channels, uint8) as PNG scanlines: a filter byte, then the row."""
    height, width, channels = rows.shape
    flat = rows.reshape(height, width * channels)
    out = np.empty((height, width * channels + 1), np.uint8)
    out[0, 0], out[1:, 0] = 1, 2
    out[0, 1:1 + channels] = flat[0, :channels]
    np.subtract(flat[0, channels:], flat[0, :-channels], out=out[0, 1 + channels:])  # (uint8: modulo 256)
    np.subtract(flat[1:], flat[:-1], out=out[1:, 1:])
    return out.tobytes()


@dataclass(frozen=True)
class Band:
    rows: Rows
    deflated: bytes  # raw deflate, ending on a full flush (or the stream's end, for the last band)
    adler: int  # of the filtered bytes
    length: int


def band(pixels: np.ndarray, rows: Rows, last: bool) -> Band:
    data = filtered(pixels[rows[0]:rows[1]])
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    deflated = compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)
    return Band(rows, deflated, zlib.adler32(data), len(data))


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def spans(height: int, changing: list[Rows]) -> list[tuple[Rows, bool]]:
    """The rows 0..height cut into bands, each (rows, whether it may change)."""
    marks = np.zeros(height, bool)
    for top, bottom in changing:
        marks[max(0, top):max(0, min(height, bottom))] = True
    cuts = [0, *(np.flatnonzero(marks[1:] != marks[:-1]) + 1).tolist(), height]
    return [((top, bottom), bool(marks[top])) for top, bottom in zip(cuts, cuts[1:]) if bottom > top]


class SharedRowsPNG:
    """Encodes RGB pictures of `base`'s size that equal `base` outside the `changing` rows. A picture
    that differs elsewhere too is still encoded right (those bands are compressed for it), only slower."""

    def __init__(self, base: Image.Image, changing: list[Rows]) -> None:
        self.base = np.asarray(base.convert("RGB"))
        self.width, self.height = base.size
        self.bands = [((top, bottom), None if changes else band(self.base, (top, bottom), bottom == self.height))
                      for (top, bottom), changes in spans(self.height, changing)]

    def picture(self) -> Image.Image:
        """A new copy of the base picture, to draw on."""
        return Image.fromarray(self.base)

    def encode(self, picture: Image.Image) -> bytes:
        if picture.mode != "RGB" or picture.size != (self.width, self.height):
            raise ValueError(f"a {picture.mode} {picture.size} picture, not RGB {self.width, self.height}")
        pixels = np.asarray(picture)
        pieces: list[Band] = []
        for (top, bottom), shared in self.bands:
            if shared is None or not np.array_equal(pixels[top:bottom], self.base[top:bottom]):
                shared = band(pixels, (top, bottom), bottom == self.height)
            pieces.append(shared)
        adler = 1
        for piece in pieces:
            adler = adler32_combine(adler, piece.adler, piece.length)
        stream = b"\x78\x5e" + b"".join(p.deflated for p in pieces) + struct.pack(">I", adler)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB, not interlaced
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def encode(picture: Image.Image) -> bytes:
    """One RGB picture as PNG, the same way (every row its own)."""
    return SharedRowsPNG(picture, [(0, picture.height)]).encode(picture)


def encode_unfiltered(pixels: np.ndarray, level: int = 1) -> bytes:
    """An RGB array (height x width x 3, uint8; a view such as an RGBA picture's first three channels
    will do) as PNG, every row unfiltered. For flat drawings such as charts: large areas of one colour
    deflate well as they are (a chart came out ~15 % smaller than with "up"), and skipping Pillow's
    try-every-filter pass halves the encode (~40 -> ~20 ms a 1080x1800 chart)."""
    height, width, channels = pixels.shape
    if channels != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"an RGB uint8 array, not {pixels.dtype} with {channels} channels")
    rows = np.empty((height, width * 3 + 1), np.uint8)  # each row: filter byte 0 ("none"), then its pixels
    rows[:, 0] = 0
    # One pass from wherever the pixels are (a view is copied once) and zlib reads the rows in place:
    # a copy to bytes of 5.8 MB a chart, and the RGBA -> RGB conversion before it, were ~a fifth of a chart.
    rows[:, 1:].reshape(height, width, 3)[...] = pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, not interlaced
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, level))
            + chunk(b"IEND", b""))
