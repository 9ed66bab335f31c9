"""Draw the poster templates' background.png (1080x1920) and logo.png with Pillow alone.

    python assets/posters/make_backgrounds.py            # rewrites every template's images
    python assets/posters/make_backgrounds.py classic    # just one

No external images: gradients, glows and shapes, drawn at 2x and shrunk for smooth edges. The text
and the QR code are drawn per member by bot/render/posters.py at the positions in each folder's layout.json,
so keep the two in step when editing (e.g. the QR box and its corner marks).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
BOLD = HERE.parent / "fonts" / "NotoSansSC-Subset-Bold.otf"
W, H, S = 1080, 1920, 2  # final size and supersampling factor
RGB = tuple[int, int, int]


def hex_rgb(code: str) -> RGB:
    code = code.lstrip("#")
    return int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16)


def vertical_gradient(stops: list[tuple[float, str]], width: int = W * S, height: int = H * S) -> Image.Image:
    """Colour stops (0..1 down the image) blended linearly."""
    column = Image.new("RGB", (1, height))
    pts = [(p, hex_rgb(c)) for p, c in stops]
    for y in range(height):
        t = y / (height - 1)
        for (p0, c0), (p1, c1) in zip(pts, pts[1:]):
            if p0 <= t <= p1:
                k = (t - p0) / (p1 - p0) if p1 > p0 else 0.0
                column.putpixel((0, y), tuple(round(a + (b - a) * k) for a, b in zip(c0, c1)))
                break
    return column.resize((width, height), Image.Resampling.NEAREST)


def glow(img: Image.Image, centre: tuple[int, int], radius: int, colour: str, strength: float) -> None:
    """A soft radial light: full strength in the middle, fading (smoothly) to nothing at `radius`."""
    ramp = Image.radial_gradient("L").resize((2 * radius, 2 * radius), Image.Resampling.BILINEAR)
    mask = ramp.point(lambda v: round(255 * strength * max(0.0, 1 - v / 180) ** 2))
    img.paste(colour, (centre[0] - radius, centre[1] - radius), mask)


def layer(img: Image.Image, paint: Callable[[ImageDraw.ImageDraw], None], blur: float = 0) -> Image.Image:
    """Paint on a transparent layer (RGBA fills take their alpha), optionally blur it, composite it."""
    over = Image.new("RGBA", img.size, (0, 0, 0, 0))
    paint(ImageDraw.Draw(over))
    if blur:
        over = over.filter(ImageFilter.GaussianBlur(blur))
    return Image.alpha_composite(img.convert("RGBA"), over).convert("RGB")


def finish(img: Image.Image) -> Image.Image:
    """Shrink from the supersampled canvas (smooth edges). No noise dither: the gradients span enough
    levels not to band visibly, and a clean image keeps the PNG (and every poster) ~10x smaller."""
    return img.resize((W, H), Image.Resampling.LANCZOS)


def sparkle(d: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple[int, ...]) -> None:
    """A four-pointed star."""
    w = r * 0.22
    d.polygon([(x, y - r), (x + w, y - w), (x + r, y), (x + w, y + w), (x, y + r), (x - w, y + w),
               (x - r, y), (x - w, y - w)], fill=fill)


def corner_marks(d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], length: int, width: int,
                 fill: tuple[int, ...]) -> None:
    """Scanner-style L marks just outside the QR box's corners."""
    x0, y0, x1, y1 = box
    for cx, cy, dx, dy in ((x0, y0, 1, 1), (x1, y0, -1, 1), (x0, y1, 1, -1), (x1, y1, -1, -1)):
        d.rounded_rectangle(sorted_box(cx, cy, cx + dx * length, cy + dy * width), radius=width // 2, fill=fill)
        d.rounded_rectangle(sorted_box(cx, cy, cx + dx * width, cy + dy * length), radius=width // 2, fill=fill)


def qr_box(template: str) -> tuple[int, int, int, int]:
    """The QR code's box in the template's layout.json: the background frames it."""
    qr = json.loads((HERE / template / "layout.json").read_text(encoding="utf-8"))["qr"]
    return qr["x"], qr["y"], qr["x"] + qr["size"], qr["y"] + qr["size"]


def sorted_box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def classic() -> dict[str, Image.Image]:
    """Deep blue with light from the top right, a teal accent, and a white card holding the QR code."""
    img = vertical_gradient([(0, "#081538"), (0.45, "#14328c"), (1, "#0b1d57")])
    glow(img, (940 * S, 200 * S), 760 * S, "#3f7dff", 0.55)
    glow(img, (60 * S, 980 * S), 620 * S, "#12b5c6", 0.30)

    def shapes(d: ImageDraw.ImageDraw) -> None:
        for r in (170, 250, 330, 410):  # concentric rings, top right
            d.ellipse(((960 - r) * S, (170 - r) * S, (960 + r) * S, (170 + r) * S),
                      outline=(255, 255, 255, 22), width=2 * S)
        for i in range(5):  # dot grid, right
            for j in range(4):
                x, y = (860 + i * 28) * S, (600 + j * 28) * S
                d.ellipse((x - 4 * S, y - 4 * S, x + 4 * S, y + 4 * S), fill=(255, 255, 255, 50))
        d.polygon([(0, 1180 * S), (1080 * S, 720 * S), (1080 * S, 860 * S), (0, 1320 * S)],
                  fill=(255, 255, 255, 10))  # a faint diagonal band
        d.rounded_rectangle((90 * S, 196 * S, 170 * S, 206 * S), radius=5 * S, fill=(56, 214, 196, 255))
        d.line((90 * S, 880 * S, 990 * S, 880 * S), fill=(255, 255, 255, 40), width=2 * S)

    img = layer(img, shapes)
    card = (70 * S, 960 * S, 1010 * S, 1840 * S)
    img = layer(img, lambda d: d.rounded_rectangle((card[0], card[1] + 24 * S, card[2], card[3] + 24 * S),
                                                    radius=56 * S, fill=(0, 8, 40, 120)), blur=36 * S)
    img = layer(img, lambda d: d.rounded_rectangle(card, radius=52 * S, fill=(255, 255, 255, 255)))
    q = qr_box("classic")
    img = layer(img, lambda d: corner_marks(d, ((q[0] - 22) * S, (q[1] - 22) * S, (q[2] + 22) * S,
                                                 (q[3] + 22) * S), 56 * S, 8 * S, (56, 214, 196, 255)))
    img = layer(img, lambda d: d.line((330 * S, 1726 * S, 750 * S, 1726 * S), fill=(226, 231, 240, 255),
                                      width=2 * S))
    return {"background.png": finish(img), "logo.png": classic_logo()}


def classic_logo() -> Image.Image:
    """合 ("together") in blue on a pale rounded square, a teal corner. QR logos should be light with
    dark strokes: a dark block, or a dark square-light ring-dark core that looks like a finder pattern,
    can throw a decoder off once the code is dense (long URLs)."""
    n = 512
    mark = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(mark)
    d.rounded_rectangle((0, 0, n - 1, n - 1), radius=n // 4, fill=(234, 241, 255, 255))
    d.pieslice((n - 200, n - 200, n + 200, n + 200), 180, 270, fill=(56, 214, 196, 255))
    d.text((n // 2, n // 2 + 4), "合", font=ImageFont.truetype(str(BOLD), 330), fill=(20, 50, 140, 255), anchor="mm")
    return mark


def festive() -> dict[str, Image.Image]:
    """Chinese red and gold: lanterns, sparkles, a sun of gold rings and a cream card for the QR code."""
    img = vertical_gradient([(0, "#b8101a"), (0.55, "#9c0c14"), (1, "#6e060c")])
    glow(img, (540 * S, 420 * S), 720 * S, "#ff5a36", 0.45)
    gold, pale = (243, 198, 119), (255, 231, 176)

    def decor(d: ImageDraw.ImageDraw) -> None:
        for r in range(120, 760, 64):  # a rising sun of thin gold rings behind the title
            d.ellipse(((540 - r) * S, (430 - r) * S, (540 + r) * S, (430 + r) * S),
                      outline=(*gold, max(8, 46 - r // 18)), width=2 * S)
        m = 36  # double gold frame
        d.rounded_rectangle((m * S, m * S, (W - m) * S, (H - m) * S), radius=28 * S, outline=(*gold, 200),
                            width=4 * S)
        d.rounded_rectangle(((m + 14) * S, (m + 14) * S, (W - m - 14) * S, (H - m - 14) * S), radius=20 * S,
                            outline=(*gold, 110), width=2 * S)
        for x, y, r in ((104, 800, 14), (978, 850, 18), (120, 600, 9), (980, 560, 11), (300, 150, 8),
                        (800, 150, 10), (540, 96, 12), (170, 1000, 8), (910, 1010, 9)):
            sparkle(d, x * S, y * S, r * S, (*pale, 230))
        for cx, top, length in ((150, 50, 90), (930, 50, 60)):  # lanterns
            d.line((cx * S, top * S, cx * S, (top + length) * S), fill=(*gold, 255), width=3 * S)
            y = top + length
            d.rounded_rectangle(((cx - 26) * S, y * S, (cx + 26) * S, (y + 14) * S), radius=4 * S,
                                fill=(*gold, 255))
            d.ellipse(((cx - 62) * S, (y + 8) * S, (cx + 62) * S, (y + 118) * S), fill=(226, 38, 36, 255),
                      outline=(*gold, 255), width=3 * S)
            for k in (-34, 0, 34):
                d.arc(((cx + k - 18 - abs(k) // 3) * S, (y + 10) * S, (cx + k + 18 + abs(k) // 3) * S,
                       (y + 116) * S), 0, 360, fill=(*gold, 150), width=2 * S)
            d.rounded_rectangle(((cx - 26) * S, (y + 112) * S, (cx + 26) * S, (y + 126) * S), radius=4 * S,
                                fill=(*gold, 255))
            for k in (-8, 0, 8):
                d.line(((cx + k) * S, (y + 126) * S, (cx + k) * S, (y + 176) * S), fill=(*gold, 230),
                       width=3 * S)

    img = layer(img, decor)
    card = (130 * S, 1080 * S, 950 * S, 1810 * S)
    img = layer(img, lambda d: d.rounded_rectangle((card[0], card[1] + 20 * S, card[2], card[3] + 20 * S),
                                                    radius=40 * S, fill=(40, 0, 0, 140)), blur=30 * S)
    img = layer(img, lambda d: d.rounded_rectangle(card, radius=36 * S, fill=(255, 247, 232, 255),
                                                    outline=(*gold, 255), width=6 * S))
    img = layer(img, lambda d: d.rounded_rectangle((card[0] + 16 * S, card[1] + 16 * S, card[2] - 16 * S,
                                                     card[3] - 16 * S), radius=24 * S, outline=(*gold, 160),
                                                    width=2 * S))
    return {"background.png": finish(img), "logo.png": festive_logo()}


def festive_logo() -> Image.Image:
    """A red 福 on a gold rounded square (light, so not a dark block that confuses QR decoders)."""
    n = 512
    mark = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(mark)
    d.rounded_rectangle((0, 0, n - 1, n - 1), radius=n // 5, fill=(243, 198, 119, 255))
    d.text((n // 2, n // 2 + 8), "福", font=ImageFont.truetype(str(BOLD), 340), fill=(184, 16, 26, 255), anchor="mm")
    return mark


def minimal() -> dict[str, Image.Image]:
    """Warm paper white, one bold orange block and thin ink lines: quiet, editorial."""
    img = vertical_gradient([(0, "#faf8f3"), (1, "#f1ede4")])
    orange, ink = (255, 90, 31), (24, 24, 27)
    x0, y0, x1, y1 = qr_box("minimal")
    card = ((x0 - 30) * S, (y0 - 30) * S, (x1 + 30) * S, (y1 + 30) * S)  # a white card around the QR code

    def shapes(d: ImageDraw.ImageDraw) -> None:
        d.rectangle((0, 0, W * S, 24 * S), fill=(*orange, 255))
        d.pieslice(((1080 - 300) * S, -300 * S, (1080 + 300) * S, 300 * S), 90, 180, fill=(*orange, 255))
        d.ellipse((836 * S, 60 * S, 916 * S, 140 * S), fill=(*ink, 255))
        d.rectangle((90 * S, 200 * S, 150 * S, 208 * S), fill=(*ink, 255))
        d.line((90 * S, 1000 * S, 990 * S, 1000 * S), fill=(*ink, 40), width=2 * S)
        for k in range(14):  # a row of small ticks, like a ruler
            x = (90 + k * 12) * S
            d.line((x, 1840 * S, x, (1852 if k % 5 else 1860) * S), fill=(*ink, 90), width=2 * S)
        d.rounded_rectangle(card, radius=32 * S, fill=(255, 255, 255, 255), outline=(*ink, 30), width=2 * S)

    img = layer(img, lambda d: d.rounded_rectangle((card[0], card[1] + 14 * S, card[2], card[3] + 14 * S),
                                                    radius=32 * S, fill=(60, 40, 20, 40)), blur=24 * S)
    img = layer(img, shapes)
    return {"background.png": finish(img)}


TEMPLATES = {"classic": classic, "festive": festive, "minimal": minimal}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(TEMPLATES):
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        for filename, image in TEMPLATES[name]().items():
            image.save(folder / filename, optimize=True)
            print(f"{folder / filename}: {image.size[0]}x{image.size[1]}, {(folder / filename).stat().st_size:,} bytes")
