"""Posters: a template (assets/posters/<name>/, see its README) + member name, partner, task title, QR code.
Cached on disk; `render` is for `asyncio.to_thread`: no shared mutable state but caches (lru_caches, a logo's
sizes) that only ever gain entries equal to what a racing thread would put there. A task's layer (its
template with the boxes every member shares) is drawn once per task, so a burst of taps after a
broadcast draws only each member's own QR code, avatar and name (see `task_layer`)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
import time
import unicodedata
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.config import ASSETS
from bot.render.png import SharedRowsPNG
from bot.render.poster_layout import VALUES, WEIGHTS, AvatarSpec, Layout, PosterRequest, QRSpec, TextSpec
from bot.render.qr import Logo, qr_image
from store.tasks import template_names

log = logging.getLogger(__name__)

RENDERER_VERSION = "2"  # 2: emoji no font here can draw are left out, not drawn as empty boxes
Face = tuple[Path, int]  # font file, face index in a collection
FONTS = ASSETS / "fonts"
BUNDLED: dict[str, Face] = {w: (FONTS / f"NotoSansSC-Subset-{w.title()}.otf", 0) for w in WEIGHTS}
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


class UnknownTemplate(ValueError):
    """No poster template of that name; the message lists the available ones."""


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


@lru_cache(maxsize=4096)  # a partner's name, a member's initials: the same fit for many posters
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


@lru_cache(maxsize=16)
def avatar_disc(spec: AvatarSpec) -> Image.Image:
    """The avatar's ringed disc, the same for every member (only read once made)."""
    big, ring = spec.size * 4, spec.ring_width * 4  # drawn 4x and shrunk: Pillow's ellipse is aliased
    disc = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    ImageDraw.Draw(disc).ellipse((0, 0, big - 1, big - 1), fill=spec.ring)
    ImageDraw.Draw(disc).ellipse((ring, ring, big - 1 - ring, big - 1 - ring), fill=spec.fill)
    return disc.resize((spec.size, spec.size), Image.Resampling.LANCZOS)


def draw_avatar(canvas: Image.Image, name: str, spec: AvatarSpec) -> None:
    disc = avatar_disc(spec)
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
                                                                                 Logo | None]:
    """(digest of the files, layout, background, logo), read once per `files` (name, size, mtime)."""
    digest = hashlib.sha256(json.dumps([(name, hashlib.sha256((folder / name).read_bytes()).hexdigest())
                                        for name, _, _ in files]).encode())
    try:
        layout = Layout.parse(json.loads((folder / "layout.json").read_text(encoding="utf-8")))
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"poster template {folder.name!r}: bad layout.json: {exc}") from exc
    logo = Logo(Image.open(folder / layout.qr.logo).convert("RGBA")) if layout.qr.logo else None  # (load closes)
    return digest.hexdigest(), layout, Image.open(folder / "background.png").convert("RGB"), logo


def box_text(request: PosterRequest, name: str, spec: TextSpec) -> str:
    """What a text box shows: the request's field (member, partner, task), else the box's own text."""
    return (getattr(request, name) if name in VALUES else "").strip() or spec.text


Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)


def reach(spec: TextSpec | QRSpec | AvatarSpec) -> Box:
    """Where a member's own element may put ink, whatever their name: a text box's lines stay inside
    it but for glyph overhang (a font size each way is ample); the QR code and avatar are squares."""
    if isinstance(spec, TextSpec):
        return (spec.x - spec.size, spec.y - spec.size, spec.x + spec.max_width + spec.size,
                spec.y + math.ceil(spec.max_lines * spec.size * spec.line_height) + spec.size)
    if isinstance(spec, AvatarSpec):  # (its initials are drawn inside the disc)
        return (spec.x - spec.size // 2, spec.y - spec.size // 2, spec.x + spec.size * 3 // 2, spec.y + spec.size * 3 // 2)
    return spec.x, spec.y, spec.x + spec.size, spec.y + spec.size


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass(frozen=True)
class TaskLayer:
    drawn: frozenset[str]  # the boxes every member of the task shares, drawn on the background
    png: SharedRowsPNG  # holds that picture; encodes a poster compressing only the rows a member's elements touch


@lru_cache(maxsize=4)  # a 1080x1920 layer is ~6 MB; a burst of taps after a broadcast is one task
def task_layer(folder: Path, files: tuple[tuple[str, int, int], ...], task_title: str) -> TaskLayer:
    """The background with the text boxes that are the same for every member of a task already drawn
    (the title, fixed texts). A box goes in only if its ink touches nothing drawn per member before
    it (QR code, avatar, member and partner boxes, a box left out): drawing it first then gives
    exactly the pixels of drawing everything in order."""
    _, layout, background, _ = load_template(folder, files)
    request = PosterRequest(folder.name, "", "", "", task_title)
    layer, drawn = background.copy(), set()
    later: list[Box] = [reach(layout.qr), *([reach(layout.avatar)] if layout.avatar else [])]
    for name, spec in layout.texts.items():
        if name in ("member_name", "partner_name"):
            later.append(reach(spec))
        elif not (text := box_text(request, name, spec)):
            drawn.add(name)  # nothing to draw
        else:
            ink = Image.new("L", layer.size)
            draw_text(ink, text, replace(spec, color="white"))
            if (box := ink.getbbox()) is not None and any(overlaps(box, other) for other in later):
                later.append(box)
            else:
                draw_text(layer, text, spec)
                drawn.add(name)
    return TaskLayer(frozenset(drawn), SharedRowsPNG(layer, [(box[1], box[3]) for box in later]))


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
        files = self._files(request.template)
        digest = load_template(*files)[0]
        key = hashlib.sha256(json.dumps([RENDERER_VERSION, self._fonts, digest, request.template,
                                         request.qr_url, request.member_name, request.partner_name,
                                         request.task_title]).encode()).hexdigest()
        out = self.cache_dir / f"{key}.png"
        if _reuse(out):
            return out
        return self._write(out, self.png(request))

    def png(self, request: PosterRequest, layered: bool = True) -> bytes:
        """The poster's PNG file. `layered=False`: drawn whole and encoded by Pillow, the way before the
        task's layer (the same pixels; the benchmark's baseline)."""
        if not layered:
            buffer = io.BytesIO()
            self.draw(request, layered=False).save(buffer, "PNG", optimize=False, compress_level=3)
            return buffer.getvalue()
        return task_layer(*self._files(request.template), request.task_title).png.encode(self.draw(request))

    def draw(self, request: PosterRequest, layered: bool = True) -> Image.Image:
        """The poster: the task's layer (template and the boxes every member shares, cached) plus this
        member's QR code, avatar and boxes. `layered=False` draws everything on the bare background:
        the same pixels (tests and the benchmark compare both), only slower."""
        files = self._files(request.template)
        _, layout, background, logo = load_template(*files)
        if layered:
            layer = task_layer(*files, request.task_title)
            poster, drawn = layer.png.picture(), layer.drawn
        else:
            poster, drawn = background.copy(), frozenset()
        poster.paste(qr_image(request.qr_url, layout.qr, logo), (layout.qr.x, layout.qr.y))
        if layout.avatar:
            draw_avatar(poster, request.member_name, layout.avatar)
        for name, spec in layout.texts.items():
            if name not in drawn and (text := box_text(request, name, spec)):
                draw_text(poster, text, spec)
        return poster

    def _files(self, template: str) -> tuple[Path, tuple[tuple[str, int, int], ...]]:
        """The template's folder and its files' (name, size, mtime): what its caches are keyed by."""
        folder = self.templates_dir / template
        return folder, tuple((p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in sorted(folder.iterdir())
                             if p.is_file() and not p.name.startswith("."))

    def _write(self, out: Path, content: bytes) -> Path:
        """Write atomically into the cache: readers see the whole picture or none."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{out.stem[:12]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
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
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=90)
        return self._write(out, buffer.getvalue())


def _reuse(cached: Path) -> bool:
    """Whether the cached picture is there; if so its access time is renewed (its modification time
    stays: it says when it was drawn), so pruning keeps what is used."""
    try:
        drawn = cached.stat().st_mtime_ns
        os.utime(cached, ns=(time.time_ns(), drawn))
    except OSError:
        return False
    return True
