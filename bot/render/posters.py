"""Posters: a template (assets/posters/<name>/, see its README) + member name, partner, task title, QR code.
Cached on disk; `render` is for `asyncio.to_thread`: no shared mutable state but (thread-safe) lru_caches."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import qrcode
from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.config import ASSETS
from store.tasks import template_names

log = logging.getLogger(__name__)

RENDERER_VERSION = "2"  # 2: emoji no font here can draw are left out, not drawn as empty boxes
Face = tuple[Path, int]  # font file, face index in a collection
FONTS = ASSETS / "fonts"
BUNDLED: dict[str, Face] = {w: (FONTS / f"NotoSansSC-Subset-{w.title()}.otf", 0) for w in ("regular", "bold")}
# The full Noto Sans CJK of Debian's fonts-noto-cjk (face 2 = SC), for characters the subset lacks.
SYSTEM: dict[str, Face] = {w: (Path(f"/usr/share/fonts/opentype/noto/NotoSansCJK-{w.title()}.ttc"), 2) for w in BUNDLED}
NO_LINE_START = set("，。、；：？！）》」』】〕〉”’…—·%,.;:?!)]}")  # kinsoku: never begin a line
NO_LINE_END = set("（《「『【〔〈“‘([{")  # never end a line
WORD = re.compile(r"[A-Za-z0-9@#&+\-_./:%'’]+\s*|\s+|.", re.S)  # Latin words stay whole
SEPARATOR_AT_END = re.compile(r"\s+·?\s*$")  # "A · B" broken after the dot: the dot goes
TRIM = " ，、,;；：:·"  # dropped before an ellipsis
# A content image with a member's QR code: the longest side at most STAMP_MAX, the shortest at least STAMP_MIN
# (a small picture is enlarged so its code scans), the code a quarter of the shortest side.
STAMP, STAMP_MAX, STAMP_MIN, STAMP_QR_MIN = "stamp-1", 2048, 640, 160
VALUES = ("member_name", "partner_name", "task_title")  # the request's fields a layout places


class UnknownTemplate(ValueError):
    """No poster template of that name; the message lists the available ones."""


@dataclass(frozen=True)
class PosterRequest:
    template: str
    qr_url: str
    member_name: str
    partner_name: str
    task_title: str


@dataclass(frozen=True)
class TextSpec:  # a text box: top-left x,y; max_width wide; max_lines lines of size px at most
    x: int
    y: int
    max_width: int
    size: int
    min_size: int = 0  # shrink down to this before ellipsizing; 0 = never shrink
    max_lines: int = 1
    weight: str = "regular"  # regular | bold
    color: str = "#000000"
    align: str = "left"  # left | center | right, within [x, x + max_width]
    valign: str = "top"  # top | middle | bottom, within max_lines * size * line_height
    line_height: float = 1.3
    text: str = ""  # fixed text (a footer, a label), or the default for a request field left empty

    def __post_init__(self) -> None:
        if self.weight not in BUNDLED or self.align not in ("left", "center", "right") or self.max_lines < 1 \
                or self.valign not in ("top", "middle", "bottom") or not 0 <= self.min_size <= self.size:
            raise ValueError(f"bad text box {self}")


@dataclass(frozen=True)
class QRSpec:
    x: int
    y: int
    size: int
    fg: str = "#000000"
    bg: str = "#ffffff"
    quiet_zone: int = 4  # modules of margin, inside `size`
    logo: str = ""  # an image file in the template folder, drawn in the middle
    logo_ratio: float = 0.22  # logo width / code width; level H restores 30 % of the code


@dataclass(frozen=True)
class AvatarSpec:  # a circle with the member's initials (like WeCom: a Chinese name's last two characters)
    x: int
    y: int
    size: int
    fill: str = "#3a6df0"
    color: str = "#ffffff"
    ring: str = "#ffffff"
    ring_width: int = 0


@dataclass(frozen=True)
class Layout:
    qr: QRSpec
    avatar: AvatarSpec | None
    texts: dict[str, TextSpec]  # member_name, partner_name, task_title show the request's; others their `text`

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Layout:
        texts = {k: TextSpec(**v) for k, v in data.items() if k not in ("qr", "avatar") and not k.startswith("$")}
        if bad := [k for k, v in texts.items() if k not in VALUES and not v.text]:
            raise ValueError(f"text boxes {bad} have no text (the request fills only {', '.join(VALUES)})")
        return cls(QRSpec(**data["qr"]), AvatarSpec(**data["avatar"]) if "avatar" in data else None, texts)


@dataclass(frozen=True)
class FittedText:
    size: int
    lines: tuple[str, ...]
    face: Face
    ellipsized: bool = False


@lru_cache(maxsize=256)
def font(face: Face, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(face[0]), size, index=face[1])


@lru_cache(maxsize=65536)
def has_glyph(face: Face, char: str) -> bool:
    # A real glyph draws differently from .notdef (which is blank in Noto: a missing glyph would vanish).
    probe = font(face, 24)
    return bytes(probe.getmask(char)) != bytes(probe.getmask("\U0010fffd"))  # (plane-16 private use)


# Emoji and other pictographs (symbols, modifiers, joiners, variation selectors): neither the bundled
# subset nor Noto Sans CJK draws most of them, and a missing one shows as an empty box.
PICTOGRAPH_CATEGORIES = ("So", "Sk", "Cf", "Mn", "Co")


def without_undrawable_symbols(text: str, weight: str) -> str:
    """`text` without the emoji and symbols that no available font draws (🚀, ✨, 👍🏻, flags, ZWJ
    sequences); letters and hanzi are kept (a missing one falls back to the system font, see
    choose_face), and ★ or ① stay, since the fonts have them."""
    faces = (BUNDLED[weight], *[f for f in (SYSTEM[weight],) if f[0].is_file()])
    kept = "".join(c for c in text if unicodedata.category(c) not in PICTOGRAPH_CATEGORIES
                   or any(has_glyph(face, c) for face in faces))
    return " ".join(kept.split())


def choose_face(text: str, weight: str) -> Face:
    """The bundled subset if it has every glyph, else the full system font if installed, else warn."""
    drawn = {c for c in text if c.isprintable() and not c.isspace()}
    for face in (BUNDLED[weight], *[f for f in (SYSTEM[weight],) if f[0].is_file()]):
        if not (missing := "".join(sorted(c for c in drawn if not has_glyph(face, c)))):
            return face
    log.warning("poster text %r: no glyph for %r in %s", text, missing, face[0].name)
    return face


def fits(f: ImageFont.FreeTypeFont, line: str, max_width: int) -> bool:
    """Advance and ink both within `max_width` (the ink only checked near the edge: getbbox is slow)."""
    advance = f.getlength(line)
    return advance <= max_width and (advance <= max_width - f.size * 0.2 or f.getbbox(line)[2] <= max_width)


def tokens(text: str, phrases: bool) -> list[str]:
    """Unbreakable pieces: Latin words, CJK characters (phrases up to a space or punctuation), kinsoku."""
    out: list[str] = []
    for tok in WORD.findall(text):
        if out and (tok.isspace() or tok[0] in NO_LINE_START or (prev := out[-1][-1]) in NO_LINE_END
                    or (phrases and not prev.isspace() and prev not in NO_LINE_START)):
            out[-1] += tok
        else:
            out.append(tok)
    return out


def wrap(text: str, f: ImageFont.FreeTypeFont, max_width: int, phrases: bool = False) -> list[str]:
    """Greedy line breaking; a piece wider than the box is split into smaller pieces, then characters."""
    lines, line, pending = [], "", tokens(text, phrases)[::-1]
    while pending:
        tok = pending.pop()
        if fits(f, (line + tok).rstrip(), max_width):
            line += tok
        elif line:
            lines.append(SEPARATOR_AT_END.sub("", line))
            line = ""
            pending.append(tok.lstrip())
        elif len(tok) > 1:
            parts = tokens(tok, False) if phrases else []
            pending.extend(reversed(parts if len(parts) > 1 else list(tok)))
        else:
            line = tok  # a single glyph wider than the box: nothing better to do
    return lines + [line.rstrip()] if line.strip() else lines


def fit_text(value: str, spec: TextSpec) -> FittedText:
    """Wrap into `max_lines`, stepping the size down to `min_size`; only then ellipsize the last line.
    Each size tries breaks at spaces/punctuation first; lines are balanced (the narrowest width)."""
    text = without_undrawable_symbols(value, spec.weight)
    face = choose_face(text, spec.weight)
    for size in (*range(spec.size, spec.min_size or spec.size, -2), spec.min_size or spec.size):
        f = font(face, size)
        for phrases in (True, False):
            if len(lines := wrap(text, f, spec.max_width, phrases)) <= spec.max_lines:
                lo, hi = spec.max_width // 2, spec.max_width
                while hi - lo > 4 and len(lines) > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if len(wrap(text, f, mid, phrases)) <= len(lines) else (mid, hi)
                return FittedText(size, tuple(wrap(text, f, hi, phrases)), face)
    kept, last = lines[: spec.max_lines - 1], lines[spec.max_lines - 1]
    while last and not fits(f, last.rstrip(TRIM) + "…", spec.max_width):
        last = last[:-1]
    return FittedText(size, (*kept, last.rstrip(TRIM) + "…"), face, ellipsized=True)


def draw_text(canvas: Image.Image, value: str, spec: TextSpec) -> None:
    fitted = fit_text(value, spec)
    f, line_h = font(fitted.face, fitted.size), fitted.size * spec.line_height
    box_h, block_h = spec.max_lines * spec.size * spec.line_height, len(fitted.lines) * line_h
    top = spec.y + {"top": 0.0, "middle": (box_h - block_h) / 2, "bottom": box_h - block_h}[spec.valign]
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(fitted.lines):
        slack = spec.max_width - f.getlength(line)
        x = spec.x + {"left": 0.0, "center": slack / 2, "right": slack}[spec.align]
        draw.text((round(x), round(top + line_h * (i + 0.5))), line, font=f, fill=spec.color, anchor="lm")


def qr_image(url: str, spec: QRSpec, logo: Image.Image | None = None) -> Image.Image:
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
        mark = logo.resize((cells * module, cells * module), Image.Resampling.LANCZOS)
        out.paste(mark, (pad + module, pad + module), mark)
    return out


def draw_avatar(canvas: Image.Image, name: str, spec: AvatarSpec) -> None:
    big, ring = spec.size * 4, spec.ring_width * 4  # drawn 4x and shrunk: Pillow's ellipse is aliased
    disc = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    ImageDraw.Draw(disc).ellipse((0, 0, big - 1, big - 1), fill=spec.ring)
    ImageDraw.Draw(disc).ellipse((ring, ring, big - 1 - ring, big - 1 - ring), fill=spec.fill)
    disc = disc.resize((spec.size, spec.size), Image.Resampling.LANCZOS)
    canvas.paste(disc, (spec.x, spec.y), disc)
    name = without_undrawable_symbols(name, "bold")  # "Tom 🚀" is T, not "om"
    text = ("".join(c for c in name if c.isalnum())[-2:] if any(ord(c) >= 0x2E80 for c in name)
            else "".join(w[0] for w in name.split()[:2]))
    size, width = int(spec.size * (0.34 if len(text) > 1 else 0.44)), int(spec.size * 0.74)
    draw_text(canvas, text.upper() or "?", TextSpec(
        x=spec.x + (spec.size - width) // 2, y=spec.y + (spec.size - size) // 2, max_width=width, size=size,
        min_size=size // 2, weight="bold", color=spec.color, align="center", line_height=1.0))


@lru_cache(maxsize=8)
def load_template(folder: Path, files: tuple[tuple[str, int, int], ...]) -> tuple[str, Layout, Image.Image,
                                                                                 Image.Image | None]:
    """(digest of the files, layout, background, logo), read once per `files` (name, size, mtime)."""
    digest = hashlib.sha256(json.dumps([(name, hashlib.sha256((folder / name).read_bytes()).hexdigest())
                                        for name, _, _ in files]).encode())
    try:
        layout = Layout.parse(json.loads((folder / "layout.json").read_text(encoding="utf-8")))
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"poster template {folder.name!r}: bad layout.json: {exc}") from exc
    logo = Image.open(folder / layout.qr.logo).convert("RGBA") if layout.qr.logo else None  # (load closes)
    return digest.hexdigest(), layout, Image.open(folder / "background.png").convert("RGB"), logo


class PosterRenderer:
    def __init__(self, templates_dir: Path, cache_dir: Path) -> None:
        self.templates_dir, self.cache_dir = Path(templates_dir), Path(cache_dir)
        self._fonts = [(str(p), p.is_file() and p.stat().st_size)  # (a new font changes the posters)
                       for p, _ in (*BUNDLED.values(), *SYSTEM.values())]

    def templates(self) -> list[str]:
        return template_names(self.templates_dir)

    def render(self, request: PosterRequest) -> Path:
        """The poster as a PNG file in the cache, drawn now unless it is already there."""
        if request.template not in (available := self.templates()):
            raise UnknownTemplate(f"unknown poster template {request.template!r}; "
                                  f"available: {', '.join(available) or 'none'}")
        folder = self.templates_dir / request.template
        digest, layout, background, logo = load_template(folder, tuple(
            (p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")))
        key = hashlib.sha256(json.dumps([RENDERER_VERSION, self._fonts, digest, request.template,
                                         request.qr_url, request.member_name, request.partner_name,
                                         request.task_title]).encode()).hexdigest()
        out = self.cache_dir / f"{key}.png"
        if _reuse(out):
            return out
        poster = background.copy()
        poster.paste(qr_image(request.qr_url, layout.qr, logo), (layout.qr.x, layout.qr.y))
        if layout.avatar:
            draw_avatar(poster, request.member_name, layout.avatar)
        for name, spec in layout.texts.items():
            if text := (getattr(request, name) if name in VALUES else "").strip() or spec.text:
                draw_text(poster, text, spec)
        return self._save(out, poster)

    def _save(self, out: Path, picture: Image.Image) -> Path:
        """Write atomically into the cache: readers see the whole picture or none."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{out.stem[:12]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                if out.suffix == ".jpg":
                    picture.save(fh, "JPEG", quality=90)
                else:
                    picture.save(fh, "PNG", optimize=False, compress_level=3)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out

    def prune(self, unused_days: float, now: float | None = None) -> int:
        """Delete cached pictures nobody asked for in `unused_days` (a hit renews its access time), and
        temporary files a crash left; how many files went. Each instance prunes its own folder."""
        now = time.time() if now is None else now
        removed = 0
        for path in self.cache_dir.glob("*") if self.cache_dir.is_dir() else ():
            limit = 3600 if path.name.startswith(".") else unused_days * 86400
            with contextlib.suppress(OSError):  # another instance sharing the folder was faster
                if path.is_file() and now - max((st := path.stat()).st_atime, st.st_mtime) > limit:
                    path.unlink()
                    removed += 1
        return removed

    def stamped_path(self, source_sha256: str, qr_url: str) -> Path:
        """Where the copy of a content image with this QR code is (or will be) cached."""
        key = hashlib.sha256(json.dumps([RENDERER_VERSION, STAMP, source_sha256, qr_url]).encode()).hexdigest()
        return self.cache_dir / f"{key}.jpg"  # JPEG whatever the source: a photo as PNG can pass WeCom's 10 MB

    def stamp(self, source: bytes, source_sha256: str, qr_url: str) -> Path:
        """A content image with the member's QR code in its bottom-right corner (the poster's QR drawing:
        whole-pixel modules, level H, a white quiet zone), scaled to at most STAMP_MAX px a side; cached."""
        out = self.stamped_path(source_sha256, qr_url)
        if _reuse(out):
            return out
        with Image.open(io.BytesIO(source)) as opened:
            picture = ImageOps.exif_transpose(opened)
            if picture.mode in ("RGBA", "LA", "P"):
                rgba = picture.convert("RGBA")
                picture = Image.new("RGB", rgba.size, "#ffffff")
                picture.paste(rgba, mask=rgba)
            picture = picture.convert("RGB")
        scale = min(STAMP_MAX / max(picture.size), max(1.0, STAMP_MIN / min(picture.size)))
        if scale != 1.0:
            picture = picture.resize((round(picture.width * scale), round(picture.height * scale)),
                                     Image.Resampling.LANCZOS)
        side = max(STAMP_QR_MIN, min(picture.size) // 4)
        margin = side // 12
        picture.paste(qr_image(qr_url, QRSpec(0, 0, side)), (picture.width - side - margin,
                                                              picture.height - side - margin))
        return self._save(out, picture)


def _reuse(cached: Path) -> bool:
    """Whether the cached picture is there; if so its access time is renewed (its modification time
    stays: it says when it was drawn), so pruning keeps what is used."""
    try:
        drawn = cached.stat().st_mtime_ns
        os.utime(cached, ns=(time.time_ns(), drawn))
    except OSError:
        return False
    return True
