"""An Agg canvas that keeps the text it has laid out and the glyphs it has drawn, for a figure that
draws the same words chart after chart (bot/render/charts.py).

Why: drawing text was ~45 % of a report chart's CPU (issue 17; cProfile and a run with text drawing
switched off: 240 -> 130 ms a chart on the loaded bench machine). Matplotlib (3.11) lays out every
string again on each draw (FreeType loads each glyph of the CJK font: ~60 µs a glyph) and renders
each glyph again at its sub-pixel position. Here a string's layout is kept per font and size, and a
glyph's bitmap per sub-pixel phase (its position modulo one pixel, in FreeType's 1/64 units): a glyph
drawn one whole pixel further along is the same bitmap one pixel further along, since FreeType moves
the hinted outline by the offset before rasterising it. So the picture is byte for byte the one
matplotlib draws (tests/test_charts.py compares them); anything this does not cover (rotated text,
math text, font features, another matplotlib's internals) is drawn by matplotlib itself.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.ft2font import FT2Font

try:
    from matplotlib.ft2font import RenderMode
except ImportError:  # (matplotlib before 3.11 draws a string whole: nothing here applies)
    RenderMode = None

# The private calls this mirrors RendererAgg.draw_text with; without them matplotlib draws alone.
SUPPORTED = RenderMode is not None and all(hasattr(FT2Font, name) for name in ("_layout", "_render_glyph", "_set_transform"))
IDENTITY = np.array([[0x10000, 0], [0, 0x10000]])  # FreeType's 16.16 unit matrix: no rotation, slant or stretch
MAX_LAYOUTS, MAX_GLYPHS = 4096, 50_000  # a chart has ~50 strings and ~350 glyphs; this is many charts' worth


class GlyphCachingRenderer(RendererAgg):
    """RendererAgg whose upright plain text reuses layouts and glyph bitmaps (one renderer per
    thread's figure, like the FT2Font objects it keeps, so nothing is shared between threads)."""

    def __init__(self, width: float, height: float, dpi: float) -> None:
        super().__init__(width, height, dpi)
        self._layouts: dict[tuple[Any, ...], list[tuple[Any, int, float, float]]] = {}
        self._glyphs: dict[tuple[Any, ...], tuple[np.ndarray, int, int]] = {}

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):  # type: ignore[no-untyped-def]
        features = mtext.get_fontfeatures() if mtext is not None else None
        language = mtext.get_language() if mtext is not None else None
        if not SUPPORTED or ismath or angle or features is not None or language is not None:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        flags = get_hinting_flag()
        size = prop.get_size_in_points()
        key = (s, prop, flags)  # (FontProperties hash and compare by family, file, size, weight...)
        items = self._layouts.get(key)
        if items is None:
            if len(self._layouts) >= MAX_LAYOUTS:
                self._layouts.clear()
            font = self._prepare_font(prop)
            items = self._layouts[key] = [(item.ft_object, item.glyph_index, item.x, item.y)
                                          for item in font._layout(s, flags=flags, features=None, language=None)]
        antialiased = gc.get_antialiased()
        for font, glyph, dx, dy in items:
            # As RendererAgg._draw_text_glyphs_and_boxes places a glyph (angle 0; y upwards for FreeType).
            px, py = round(0x40 * (x + dx)), round(0x40 * (self.height - y + dy))
            glyph_key = (font, size, glyph, px & 63, py & 63, antialiased, flags)
            drawn = self._glyphs.get(glyph_key)
            if drawn is None:
                if len(self._glyphs) >= MAX_GLYPHS:
                    self._glyphs.clear()
                font.set_size(size, self.dpi)
                font._set_transform(IDENTITY, [px & 63, py & 63])  # the sub-pixel phase only
                bitmap = font._render_glyph(glyph, flags, RenderMode.NORMAL if antialiased else RenderMode.MONO)
                buffer = np.array(bitmap.buffer)  # a copy: FreeType reuses its bitmap for the next glyph
                if not antialiased:
                    buffer *= 0xff
                drawn = self._glyphs[glyph_key] = (buffer, bitmap.left, bitmap.top)
            buffer, left, top = drawn
            # draw_text_image's y is downwards and names the bitmap's bottom side.
            self._renderer.draw_text_image(buffer, left + (px >> 6),
                                           int(self.height) - (top + (py >> 6)) + buffer.shape[0], 0, gc)


class GlyphCachingCanvas(FigureCanvasAgg):
    """FigureCanvasAgg drawing with a GlyphCachingRenderer (kept while the figure's size stays)."""

    def get_renderer(self) -> RendererAgg:
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:
            self.renderer = GlyphCachingRenderer(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer
