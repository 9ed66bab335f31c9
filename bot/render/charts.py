"""Report charts: one portrait PNG (funnel, 14-day trend, leaderboard) sized for a phone in WeCom.

Whichever instance sends the message draws the chart, so a report travels through the outbox as a
plain JSON spec (see `render_report`) and any instance can render it. Matplotlib's object-oriented
API only (no pyplot state); each thread keeps its own figure (see `_Page`), so several threads may
render at once. Every text gets the bundled Noto Sans SC subset explicitly, so Chinese never falls
back to DejaVu's empty boxes.

Speed (issue 17: the whole `统计` reply, chart included, within 200 ms): the figure, its axes and
their ticks are built once per thread and only their data changes from chart to chart; the panels
are placed by measuring their labels here rather than by matplotlib's constrained layout (which
measured every artist twice, ~a quarter of a chart); the bundled fonts are read from memory, not
their files (see `_Renderer`); the PNG is encoded without Pillow's per-row filter search
(bot/render/png.py), straight from the renderer's buffer.
"""
import asyncio
import io
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import matplotlib
from matplotlib import cbook
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ft2font import FT2Font
from matplotlib.ticker import MaxNLocator

from bot.config import ASSETS
from bot.render.png import encode_unfiltered

FONTS = ASSETS / "fonts"
REGULAR, BOLD = FONTS / "NotoSansSC-Subset-Regular.otf", FONTS / "NotoSansSC-Subset-Bold.otf"
COLORS = ("#2f6fde", "#f08c2e", "#2ca46b", "#d64545", "#8a5cd6")
LABEL_CHARS = 14
WIDTH, HEIGHT, DPI = 7.2, 12.0, 150  # inches: 1080 x 1800 px, a phone's width
PX = DPI / 72  # pixels a point
PAD = 0.12 * DPI  # pixels around the title and panels
SIDE = 3 * PX  # pixels kept free at the left and right edges
TICK_PAD = 3.5 * PX  # matplotlib's default gap between a tick and its label (and a tick's length)
BAR_LABEL_GAP = 5  # points between a bar's end and its label


@lru_cache(maxsize=32)  # (matplotlib copies the properties it is given; these are never changed)
def _font(size: float, bold: bool = False) -> FontProperties:
    return FontProperties(fname=str(BOLD if bold else REGULAR), size=size)


@lru_cache(maxsize=32)  # per font and thread: an FT2Font is not to be shared between threads (matplotlib's rule too)
def _font_in_memory(path: str, thread: int) -> FT2Font | None:
    """The bundled font as matplotlib's get_font opens it (the Last Resort font behind it, so a missing
    glyph still warns), but read from bytes in memory rather than from its file. None with a matplotlib
    that builds its fonts otherwise (this is 3.11's way, through its private arguments): its own then."""
    try:
        kerning = matplotlib.rcParams["text.kerning_factor"]
        fallback = []
        if matplotlib.rcParams["font.enable_last_resort"]:
            last_resort = FT2Font(cbook._get_data_path("fonts", "ttf", "LastResortHE-Regular.ttf"),
                                  _kerning_factor=kerning, _warn_if_used=True)
            last_resort.set_charmap(0)  # (its Unicode charmap is empty; matplotlib picks this one too)
            fallback.append(last_resort)
        with open(path, "rb") as file:
            return FT2Font(io.BytesIO(file.read()), _fallback_list=fallback, _kerning_factor=kerning)
    except (KeyError, TypeError):
        return None


# Nor between processes: a forked child opens its own (as matplotlib empties its font cache in one).
os.register_at_fork(after_in_child=_font_in_memory.cache_clear)


@lru_cache(maxsize=64)
def _height_metrics(path: str, fontsize: float, dpi: float) -> tuple[float | None, float | None, float | None]:
    """Ascent, descent and line gap of the font at this size, as matplotlib.text.Text._get_layout works
    them out from the OS/2 table."""
    font = _font_in_memory(path, threading.get_ident())
    table = font.get_sfnt_table("OS/2") if font is not None else None
    if table is None:  # matplotlib's own way then (from the hhea table, for a font without this one)
        return None, None, None
    units_per_em = font.get_sfnt_table("head")["unitsPerEm"]
    scale = 1 / units_per_em * fontsize * dpi / 72
    return table["sTypoAscender"] * scale, -table["sTypoDescender"] * scale, table["sTypoLineGap"] * scale


class _Renderer(RendererAgg):
    """Agg, with the bundled fonts read from memory. FreeType reads a glyph of these CFF fonts in ~20
    small reads, and from a file each is a seek and a read called back into Python: half the time of
    laying out and drawing a line of text (which every label is, twice: measured, then drawn)."""

    def _prepare_font(self, font_prop: FontProperties) -> FT2Font:
        font = _font_in_memory(font_prop.get_file(), threading.get_ident()) \
            if font_prop.get_file() in (str(REGULAR), str(BOLD)) else None
        if font is None:
            return super()._prepare_font(font_prop)
        font.clear()
        font.set_size(font_prop.get_size_in_points(), self.dpi)
        return font

    def _get_font_height_metrics(self, font_prop: FontProperties) -> tuple[float | None, float | None, float | None]:
        """What matplotlib's Text otherwise looks up (the font, then three of its tables) for every
        layout of a text, worked out once per font and size, the same way."""
        if font_prop.get_file() not in (str(REGULAR), str(BOLD)):
            return None, None, None  # (matplotlib reads them itself)
        return _height_metrics(font_prop.get_file(), font_prop.get_size_in_points(), self.dpi)


class _Canvas(FigureCanvasAgg):
    def get_renderer(self) -> RendererAgg:  # FigureCanvasAgg's, with the renderer above
        key = (*self.get_width_height(physical=True), self.figure.dpi)
        if self._lastKey != key:
            self.renderer, self._lastKey = _Renderer(*key), key
        return self.renderer


@lru_cache(maxsize=1)
def _charmap() -> frozenset[int]:
    return frozenset(FT2Font(str(REGULAR)).get_charmap())


def _text(value: Any, limit: int | None = LABEL_CHARS) -> str:
    """One line the font can draw: a letter it lacks (a rare hanzi) becomes "?", emoji and the like go."""
    s = " ".join("".join(c if ord(c) in _charmap() else "?" if unicodedata.category(c)[0] in "LN" else ""
                         for c in str(value)).split())
    return s[: limit - 1] + "…" if limit and len(s) > limit else s


def _num(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0


def _fmt(x: float) -> str:  # ASCII "-" only: the font has no U+2212 minus
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _pairs(rows: Any) -> list[tuple[str, float]]:
    return [(_text(r[0]), _num(r[1])) for r in rows or [] if isinstance(r, (list, tuple)) and len(r) >= 2]


def _em(s: str) -> float:  # width in font sizes
    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.6 for c in s)


def _wrap(s: str, em: float) -> str:
    """At most two lines of `em` font sizes each (Chinese has no spaces to break at)."""
    def fits(t: str) -> int:
        return next((i for i in range(len(t)) if _em(t[: i + 1]) > em), len(t))
    first = fits(s)
    rest = s[first:].strip()
    second = fits(rest)
    return s[:first] + ("\n" + (rest if second == len(rest) else rest[: second - 1] + "…") if rest else "")


W_PX, H_PX = WIDTH * DPI, HEIGHT * DPI


@dataclass
class _Fit:
    """What a panel needs around its axes, in pixels: `left` for its tick labels, `above` for a legend,
    `below` for day labels, `overhang` for the last day label past the right end; `ends` are its bars'
    ends (a share of the axes' width) and their labels' widths, which must stay inside the picture."""

    left: float = 0.0
    above: float = 0.0
    below: float = 0.0
    overhang: float = 0.0
    ends: list[tuple[float, float]] = field(default_factory=list)


_extents: dict[tuple[str, float], tuple[float, float]] = {}  # names, steps and days recur from chart to chart


def _extent(renderer: RendererAgg, s: str, size: float) -> tuple[float, float]:
    """Width and height in pixels of `s` in the regular font: the same whichever thread's renderer
    measures it (one font, one DPI), so one cache serves them all (dict reads and writes are atomic)."""
    extent = _extents.get((s, size))
    if extent is None:
        if len(_extents) > 4096:
            _extents.clear()
        width, height, _ = renderer.get_text_width_height_descent(s, _font(size), False)
        extent = _extents[s, size] = (width, height)
    return extent


def _width(renderer: RendererAgg, s: str, size: float) -> float:
    return _extent(renderer, s, size)[0]


def _line_height(renderer: RendererAgg, s: str, size: float) -> float:
    """As matplotlib lays out one line: never less than "lp" (ascender and descender)."""
    return max(_extent(renderer, t, size)[1] for t in (s, "lp"))


def _clear(ax: Axes) -> None:
    """The axes as built, whatever the previous chart on this thread drew or switched off."""
    for container in list(ax.containers):
        container.remove()
    for artist in [*ax.patches, *ax.lines, *ax.texts, *ax.collections]:
        artist.remove()
    if ax.legend_ is not None:
        ax.legend_.remove()
    ax.set_axis_on()
    ax.xaxis.set_visible(True)
    ax.grid(False)
    ax.spines[:].set_visible(True)


def _no_data(ax: Axes, text: str) -> _Fit:
    if not text:  # the spec gave no words for it: an empty frame, still visibly a panel
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.spines["left"].set_bounds(0, 1)  # every mode sets it: a bar panel shortens it
        ax.set_xticks([])
        ax.set_yticks([])
        return _Fit()
    ax.axis("off")
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#888888",
            fontproperties=_font(15), parse_math=False)
    return _Fit()


def _bars(ax: Axes, renderer: RendererAgg, rows: list[tuple[str, float]], labels: list[str], color: str) -> _Fit:
    """Horizontal bars, first row on top, each labelled at its end."""
    ys, values, names = range(len(rows)), [v for _, v in rows], [name for name, _ in rows]
    ax.barh(ys, values, color=color, height=0.62)
    ax.set_yticks(ys, names, fontproperties=_font(15), parse_math=False)
    ax.set_ylim(max(len(rows), 5) - 0.5, -0.5)  # first row on top; a single bar stays bar-sized
    low, high = min(0.0, *values), max(values) * 1.45 if max(values) > 0 else 1  # room for the labels
    ax.set_xlim(low, high)
    for y, v, label in zip(ys, values, labels):
        ax.annotate(label, (max(v, 0), y), xytext=(BAR_LABEL_GAP, 0), textcoords="offset points", va="center",
                    fontproperties=_font(14), parse_math=False)
    ax.xaxis.set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.spines[["top", "right", "bottom"]].set_visible(False)
    ax.spines["left"].set_bounds(len(rows) - 0.5, -0.5)
    ends = [((max(v, 0) - low) / (high - low), BAR_LABEL_GAP * PX + _width(renderer, label, 14))
            for v, label in zip(values, labels)]
    return _Fit(left=max(_width(renderer, name, 15) for name in names) + TICK_PAD, ends=ends)


def _funnel(ax: Axes, renderer: RendererAgg, rows: list[tuple[str, float]], notes: list[str]) -> _Fit:
    """Each step's value and the note the text gives it (its share of the step before, or a
    labelled multiplier): the chart computes no rate of its own, so chart and text agree."""
    labels = [_fmt(v) + (f"  ({note})" if note else "") for (_, v), note in zip(rows, notes)]
    return _bars(ax, renderer, rows, labels, COLORS[0])


def _trend(ax: Axes, renderer: RendererAgg, days: list[str], series: dict[str, list[float]]) -> _Fit:
    n = max(len(days), *(len(ys) for ys in series.values()))
    days = (days + [str(i + 1) for i in range(len(days), n)])[:n]
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(range(len(ys)), ys, marker="o", markersize=5, linewidth=2.2, color=COLORS[i % 5], label=name)
    values = [v for ys in series.values() for v in ys]
    low, top = min(0.0, *values), max(0.0, *values) or 1.0
    ticks = MaxNLocator(nbins=5, integer=all(v.is_integer() for v in values)).tick_values(low, top)
    high = max(ticks[-1], top * 1.05)  # the next tick up, with room for the markers
    ticks = [t for t in ticks if low <= t <= high]
    ax.set_ylim(low, high)
    ax.spines["left"].set_bounds(low, high)  # the whole height (after an empty frame here, it is not)
    tick_labels = [_fmt(t) for t in ticks]
    ax.set_yticks(ticks, tick_labels, fontproperties=_font(13))
    # Label every `step`-th day, counting back from the last, so that labels never overlap.
    step = math.ceil(n / max(1, int(6.0 * 72 / (max(_em(d) for d in days) * 13 + 10))))
    shown = [d if (n - 1 - i) % step == 0 else "" for i, d in enumerate(days)]
    ax.set_xticks(range(n), shown, fontproperties=_font(13), parse_math=False)
    ax.set_xlim(-0.5, n - 0.5)
    ax.grid(axis="y", color="#e5e5e5")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    widest = max(_em(name) for name in series) * 14 + 50  # points: text, line sample and gap
    legend = ax.legend(prop=_font(14), loc="lower left", bbox_to_anchor=(0, 1), borderaxespad=0.2, frameon=False,
                       ncol=max(1, min(len(series), int(6.2 * 72 // widest))))  # above the plot, never over it
    for t in legend.get_texts():
        t.set_parse_math(False)
    left = max(_width(renderer, t, 13) for t in tick_labels) + 2 * TICK_PAD
    slot = (W_PX - 2 * SIDE - left) / n  # (about: the axes' width is not known yet)
    return _Fit(left=left, above=legend.get_window_extent(renderer).height + 0.2 * 14 * PX,
                below=_line_height(renderer, days[-1], 13) + 2 * TICK_PAD,
                overhang=max(0.0, _width(renderer, days[-1], 13) / 2 - slot / 2))


def _place(ax: Axes, fit: _Fit, top: float, bottom: float) -> None:
    """Axes in the band `top`..`bottom` (pixels from the picture's bottom) with room for what `fit` asks."""
    left = SIDE + fit.left
    room = W_PX - SIDE - left - fit.overhang
    width = min([room] + [(room - label) / end for end, label in fit.ends if end > 0])
    bottom, top = bottom + fit.below, top - fit.above
    ax.set_position((left / W_PX, bottom / H_PX, max(width, 1.0) / W_PX, max(top - bottom, 1.0) / H_PX))


class _Page:
    """One thread's figure, kept from chart to chart: building the figure, its axes and their ticks
    was ~a fifth of a chart, and matplotlib caches text measurements per renderer, so the labels
    every chart has (titles, steps, days, ticks) are measured once per thread. `_clear` takes off
    what a chart adds or switches off, so nothing of one chart shows in the next (tests/test_charts.py)."""

    _local = threading.local()

    def __init__(self) -> None:
        self.figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, facecolor="white")
        self.canvas = _Canvas(self.figure)
        self.title = self.figure.text(0.5, 1, "", ha="center", va="top", fontproperties=_font(21, True),
                                      parse_math=False)
        self.headings = [self.figure.text(0.01, 1, "", ha="left", va="top", fontproperties=_font(17, True),
                                          parse_math=False) for _ in range(3)]
        self.axes = [self.figure.add_axes((0, 0, 1, 1)) for _ in range(3)]

    @classmethod
    def of_this_thread(cls) -> "_Page":
        page = getattr(cls._local, "page", None)
        if page is None:
            page = cls._local.page = cls()
        return page

    def heading(self, text: Any, top: float) -> float:
        """`text` set at `top` (pixels from the bottom); the pixels below it where the panel may start."""
        text.set_y(top / H_PX)
        height = text.get_window_extent(self.canvas.get_renderer()).height if text.get_text() else 0.0
        return top - height - (1.5 * PAD if height else 0.0)

    def png(self) -> bytes:
        self.canvas.draw()
        rgba = np.asarray(self.canvas.get_renderer().buffer_rgba())  # the renderer's own buffer, not a copy
        return encode_unfiltered(rgba[..., :3])  # the figure is opaque: alpha is 255 everywhere


def render_report(spec: dict[str, Any]) -> bytes:
    """PNG of `spec`: {"title": str, "funnel": [[step, n, note?], ...], "trend": {"days": [label, ...],
    "series": {name: [n per day]}}, "leaderboard": {"title": str, "rows": [[name, n], ...]},
    "labels": {"funnel": str, "trend": str, "no_data": str}} (the words are the handler's, in the asker's
    language). Any panel may be missing or empty: it then shows labels["no_data"]. Names are cut to 14 characters."""
    labels = spec.get("labels") if isinstance(spec.get("labels"), dict) else {}
    no_data = _text(labels.get("no_data") or "", None)
    funnel = _pairs(spec.get("funnel"))
    notes = [_text(r[2], None) if len(r) > 2 and r[2] else "" for r in spec.get("funnel") or []
             if isinstance(r, (list, tuple)) and len(r) >= 2]
    trend = spec.get("trend") or {}
    days = [_text(d) for d in trend.get("days") or []]
    series = {_text(k): [_num(v) for v in vs] for k, vs in (trend.get("series") or {}).items() if vs}
    board = spec.get("leaderboard") or {}
    rows = sorted(_pairs(board.get("rows")), key=lambda r: -r[1])[:10]  # best on top

    page = _Page.of_this_thread()
    renderer = page.canvas.get_renderer()
    for ax in page.axes:
        _clear(ax)
    fits = [_funnel(page.axes[0], renderer, funnel, notes) if funnel else _no_data(page.axes[0], no_data),
            _trend(page.axes[1], renderer, days, series) if series else _no_data(page.axes[1], no_data),
            _bars(page.axes[2], renderer, [(f"{i}. {name}", v) for i, (name, v) in enumerate(rows, 1)],
                  [_fmt(v) for _, v in rows], COLORS[2]) if rows else _no_data(page.axes[2], no_data)]
    page.title.set_text(_wrap(_text(spec.get("title") or "", None), 23))
    for heading, title in zip(page.headings, [labels.get("funnel"), labels.get("trend"), board.get("title")]):
        heading.set_text(_wrap(_text(title or "", None), 26))
    # The panels share what the title leaves in the ratio 1 : 1 : 1.25, 2 PAD apart (as constrained
    # layout placed them before).
    top = page.heading(page.title, H_PX - PAD)
    ratios = (1.0, 1.0, 1.25)
    share = (top - PAD - 2 * 2 * PAD) / sum(ratios)
    for ax, heading, fit, ratio in zip(page.axes, page.headings, fits, ratios):
        bottom = top - ratio * share
        _place(ax, fit, page.heading(heading, top), bottom)
        top = bottom - 2 * PAD
    return page.png()


# Charts are drawn on one thread of their own: its figure stays built and its measurements cached. On
# asyncio's shared pool a chart landed on whichever thread was free (the pool even starts a new one
# while the last is still handing back its result), so a chart often paid for building a figure
# again (~+100 ms CPU) and each pool thread kept a 1080x1800 picture. Matplotlib holds the GIL while
# it draws, so more threads would not draw more charts a second anyway.
_chart_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chart")


async def render_report_async(spec: dict[str, Any]) -> bytes:
    """`render_report` off the event loop (it is CPU-bound), on the chart thread."""
    return await asyncio.get_running_loop().run_in_executor(_chart_thread, render_report, spec)
