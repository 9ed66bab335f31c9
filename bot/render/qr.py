"""A QR code drawn for a poster or a stamped content image: whole-pixel modules, level H (a centred
logo may cover what it restores), the quiet zone inside the box."""
from __future__ import annotations

import qrcode
from PIL import Image, ImageDraw

from bot.render.poster_layout import QRSpec


def qr_image(url: str, spec: QRSpec, logo: Image.Image | Logo | None = None) -> Image.Image:
    """The QR code as a `size`-px square: whole-pixel modules (no resampling blur), centred."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_H, box_size=1, border=spec.quiet_zone)
    qr.add_data(url)
    n = len(matrix := qr.get_matrix())  # (makes the code, fitting the version to the data)
    if (module := spec.size // n) < 2:
        raise ValueError(f"a {spec.size}px QR box is too small for {n} modules (a {len(url)}-char URL)")
    marks = Image.frombytes("L", (n, n), bytes(255 if dark else 0 for row in matrix for dark in row))
    out = Image.new("RGB", (spec.size, spec.size), spec.bg)
    at, side = (spec.size - n * module) // 2, n * module
    out.paste(spec.fg, (at, at, at + side, at + side), marks.resize((side, side), Image.Resampling.NEAREST))
    if logo is not None:
        cells = int((n - 2 * spec.quiet_zone) * spec.logo_ratio) // 2 * 2 + n % 2  # n's parity: on the grid
        pad, end = at + (n - cells - 2) // 2 * module, at + (n + cells + 2) // 2 * module - 1  # 1-module margin
        ImageDraw.Draw(out).rounded_rectangle((pad, pad, end, end), radius=module, fill=spec.bg)
        mark = logo.scaled(cells * module) if isinstance(logo, Logo) else \
            logo.resize((cells * module, cells * module), Image.Resampling.LANCZOS)
        out.paste(mark, (pad + module, pad + module), mark)
    return out


class Logo:
    """A template's logo with its resized copies: a QR code's logo has one size per code version, and
    resizing (LANCZOS) for every poster cost ~8 ms of it."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self._sizes: dict[int, Image.Image] = {}  # (a race only resizes twice: same result)

    def scaled(self, side: int) -> Image.Image:
        if (mark := self._sizes.get(side)) is None:
            mark = self._sizes[side] = self.image.resize((side, side), Image.Resampling.LANCZOS)
        return mark
