"""Report charts: one portrait PNG (funnel, 14-day trend, leaderboard) sized for a phone in WeCom.

Whichever instance sends the message draws the chart, so a report travels through the outbox as a
plain JSON spec (see `render_report`) and any instance can render it. Matplotlib's object-oriented
API only (no pyplot state), so several threads may render at once; every text gets the bundled
Noto Sans SC subset explicitly, so Chinese never falls back to DejaVu's empty boxes.
"""
import io
import math
import threading
import unicodedata
from functools import lru_cache
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ft2font import FT2Font
from matplotlib.ticker import MaxNLocator

from bot.config import ASSETS

FONTS = ASSETS / "fonts"
REGULAR, BOLD = FONTS / "NotoSansSC-Subset-Regular.otf", FONTS / "NotoSansSC-Subset-Bold.otf"
COLORS = ("#2f6fde", "#f08c2e", "#2ca46b", "#d64545", "#8a5cd6")
LABEL_CHARS = 14


class _Canvas(FigureCanvasAgg):
    """Draws with its thread's Agg renderer, kept from chart to chart: a new one allocates the whole
    picture, and matplotlib caches text measurements per renderer, so labels every chart has (titles,
    steps, days, ticks) are measured once per thread instead of once per chart."""

    _local = threading.local()

    def get_renderer(self) -> RendererAgg:
        key = (*self.figure.bbox.size, self.figure.dpi)
        if getattr(self._local, "key", None) != key:
            self._local.renderer, self._local.key = RendererAgg(*key), key
        self.renderer = self._local.renderer
        return self.renderer


@lru_cache(maxsize=32)  # (matplotlib copies the properties it is given; these are never changed)
def _font(size: float, bold: bool = False) -> FontProperties:
    return FontProperties(fname=str(BOLD if bold else REGULAR), size=size)


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


def _no_data(ax: Axes, text: str) -> None:
    if not text:  # the spec gave no words for it: an empty frame, still visibly a panel
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.axis("off")
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#888888",
            fontproperties=_font(15), parse_math=False)


def _bars(ax: Axes, rows: list[tuple[str, float]], labels: list[str], color: str) -> None:
    """Horizontal bars, first row on top, each labelled at its end."""
    ys, values = range(len(rows)), [v for _, v in rows]
    ax.barh(ys, values, color=color, height=0.62)
    ax.set_yticks(ys, [name for name, _ in rows], fontproperties=_font(15), parse_math=False)
    ax.set_ylim(max(len(rows), 5) - 0.5, -0.5)  # first row on top; a single bar stays bar-sized
    ax.set_xlim(min(0.0, *values), max(values) * 1.45 if max(values) > 0 else 1)  # room for the labels
    for y, v, label in zip(ys, values, labels):
        ax.annotate(label, (max(v, 0), y), xytext=(5, 0), textcoords="offset points", va="center",
                    fontproperties=_font(14), parse_math=False)
    ax.xaxis.set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.spines[["top", "right", "bottom"]].set_visible(False)
    ax.spines["left"].set_bounds(len(rows) - 0.5, -0.5)


def _funnel(ax: Axes, rows: list[tuple[str, float]], notes: list[str]) -> None:
    """Each step's value and the note the text gives it (its share of the step before, or a
    labelled multiplier): the chart computes no rate of its own, so chart and text agree."""
    labels = [_fmt(v) + (f"  ({note})" if note else "") for (_, v), note in zip(rows, notes)]
    _bars(ax, rows, labels, COLORS[0])


def _trend(ax: Axes, days: list[str], series: dict[str, list[float]]) -> None:
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
    ax.set_yticks(ticks, [_fmt(t) for t in ticks], fontproperties=_font(13))
    # Label every `step`-th day, counting back from the last, so that labels never overlap.
    step = math.ceil(n / max(1, int(6.0 * 72 / (max(_em(d) for d in days) * 13 + 10))))
    ax.set_xticks(range(n), [d if (n - 1 - i) % step == 0 else "" for i, d in enumerate(days)],
                  fontproperties=_font(13), parse_math=False)
    ax.set_xlim(-0.5, n - 0.5)
    ax.grid(axis="y", color="#e5e5e5")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    widest = max(_em(name) for name in series) * 14 + 50  # points: text, line sample and gap
    legend = ax.legend(prop=_font(14), loc="lower left", bbox_to_anchor=(0, 1), borderaxespad=0.2, frameon=False,
                       ncol=max(1, min(len(series), int(6.2 * 72 // widest))))  # above the plot, never over it
    for t in legend.get_texts():
        t.set_parse_math(False)


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

    fig = Figure(figsize=(7.2, 12), dpi=150, facecolor="white", layout="constrained")  # 1080 px wide
    fig.get_layout_engine().set(h_pad=0.12)  # inches around the title and panels
    fig.suptitle(_wrap(_text(spec.get("title") or "", None), 23), fontproperties=_font(21, True), parse_math=False)
    # One subfigure per panel, so the leaderboard's long names don't push the other panels right.
    subs = fig.subfigures(3, 1, height_ratios=[1, 1, 1.25], hspace=0.02)
    titles = [labels.get("funnel"), labels.get("trend"), board.get("title")]
    for sub, title in zip(subs, titles):
        text = _text(title or "", None)
        sub.suptitle(_wrap(text, 26), x=0.01, ha="left", fontproperties=_font(17, True), parse_math=False)
    axes = [sub.subplots() for sub in subs]
    _funnel(axes[0], funnel, notes) if funnel else _no_data(axes[0], no_data)
    _trend(axes[1], days, series) if series else _no_data(axes[1], no_data)
    ranked = [(f"{i}. {name}", v) for i, (name, v) in enumerate(rows, 1)]
    _bars(axes[2], ranked, [_fmt(v) for _, v in rows], COLORS[2]) if rows else _no_data(axes[2], no_data)
    buffer = io.BytesIO()
    # zlib level 1 instead of 6: the encode was ~60 of ~250 ms CPU a chart, now ~40; ~10 % bigger.
    _Canvas(fig).print_png(buffer, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()
