"""The report chart: a valid phone-sized PNG, Chinese drawn with the bundled font (never boxes)."""
import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageChops

from bot.charts import render_report

SPEC = {
    "title": "统计报表 · 本月",
    "funnel": [["送达", 120], ["分享", 80], ["独立点击", 300], ["线索", 20], ["领取", 15], ["成交", 3]],
    "trend": {"days": [f"11-{d}" for d in range(15, 29)],
              "series": {"分享": list(range(14)), "独立点击": [i * 3 % 17 for i in range(14)], "线索": [i % 3 for i in range(14)]}},
    "leaderboard": {"title": "伙伴排行 · 独立点击", "rows": [["星河科技", 120], ["Blue Ocean", 80]]},
}


def render(spec: dict) -> Image.Image:
    # A glyph missing from the font is a matplotlib warning: here it fails the test.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = render_report(spec)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_a_full_report_is_a_portrait_png_for_a_phone() -> None:
    image = render(SPEC)
    assert image.format == "PNG" and image.width == 1080 and image.height > image.width
    ink = image.convert("L").point(lambda v: 255 if v < 200 else 0).histogram()[255]
    assert ink > 20_000  # bars, lines and text, not a blank page


def test_chinese_is_drawn_with_real_glyphs() -> None:
    first, second = render(SPEC), render({**SPEC, "title": "归因分析 · 本月"})
    title_band = (0, 0, first.width, 80)
    # Missing glyphs would be identical boxes: different characters must give different pixels.
    assert ImageChops.difference(first.crop(title_band).convert("L"), second.crop(title_band).convert("L")).getbbox()


def test_the_default_font_would_have_failed() -> None:
    """The warning the tests rely on is real: DejaVu has no Chinese and matplotlib says so."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    figure.suptitle("统计")
    with warnings.catch_warnings(), pytest.raises(UserWarning, match="missing from font"):
        warnings.simplefilter("error")
        FigureCanvasAgg(figure).print_png(io.BytesIO())


@pytest.mark.parametrize("spec", [
    {},
    {"title": "空", "funnel": [], "trend": {}, "leaderboard": {"title": "排行", "rows": []}},
    {"funnel": [["送达", 0], ["分享", 0]], "trend": {"days": ["11-01"], "series": {"分享": [0]}}},
    {"funnel": [["送达", 5]], "leaderboard": {"title": "x", "rows": [["一" * 40, 1]]}},
    {"leaderboard": {"title": "Top", "rows": [[f"Partner {i}", 10 - i] for i in range(12)]}},
])
def test_empty_and_odd_specs_render(spec: dict) -> None:
    assert render(spec).width == 1080


def test_charts_render_in_parallel_threads() -> None:
    with ThreadPoolExecutor(4) as pool:
        images = list(pool.map(render_report, [SPEC] * 4))
    assert len({len(png) for png in images}) == 1 and all(png.startswith(b"\x89PNG") for png in images)
