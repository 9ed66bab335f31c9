"""The report chart: a valid phone-sized PNG, Chinese drawn with the bundled font (never empty boxes),
any spec drawn without raising, and several charts drawn at once in threads."""
import io
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from bot.render.charts import render_report

SPEC: dict[str, Any] = {
    "title": "统计报表 · 本月 2026-11-01 – 2026-11-28",
    "funnel": [["送达", 120], ["分享", 80], ["点击", 350], ["独立点击", 300], ["线索", 20], ["领取", 15], ["成交", 3]],
    "trend": {"days": [f"11-{d}" for d in range(15, 29)],
              "series": {"分享": [3, 5, 8, 2, 9, 14, 7, 6, 4, 10, 12, 8, 5, 9],
                         "独立点击": [20, 25, 30, 18, 40, 55, 33, 28, 22, 35, 48, 39, 26, 31],
                         "线索": [1, 0, 2, 1, 3, 2, 0, 1, 2, 4, 1, 0, 2, 1]}},
    "leaderboard": {"title": "伙伴排行 · 独立点击",
                    "rows": [["星河科技", 120], ["Blue Ocean", 80], ["北辰", 33], ["云图", 20], ["甲乙丙", 1]]},
    "labels": {"funnel": "转化漏斗", "trend": "近 14 天趋势", "no_data": "暂无数据"},
}


def render(spec: dict[str, Any]) -> np.ndarray:
    """The chart as grey pixels; a matplotlib warning (a glyph missing from the font, a layout that
    could not fit) fails the test, and so does ink on the image's edge (something clipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = render_report(spec)
    Image.open(io.BytesIO(png)).verify()
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width == 1080 and image.height > image.width
    pixels = np.asarray(image.convert("L"))
    edges = np.concatenate([pixels[:3].ravel(), pixels[-3:].ravel(), pixels[:, :3].ravel(), pixels[:, -3:].ravel()])
    assert edges.min() > 200, "something is drawn over the edge of the image"
    return pixels


def test_a_full_report_is_a_portrait_png_for_a_phone() -> None:
    pixels = render(SPEC)
    assert pixels.shape == (1800, 1080)
    assert (pixels < 200).sum() > 50_000  # bars, lines and text: not a blank page


def test_the_missing_glyph_warning_is_real() -> None:
    """What `render` relies on: with matplotlib's default font (DejaVu, no Chinese) the same
    warnings filter fails the drawing."""
    figure = Figure()
    figure.suptitle("统计")
    with warnings.catch_warnings(), pytest.raises(UserWarning, match="missing from font"):
        warnings.simplefilter("error")
        FigureCanvasAgg(figure).print_png(io.BytesIO())


def test_chinese_is_drawn_with_real_glyphs() -> None:
    # Missing glyphs would all be the same empty box: different characters must give different pixels.
    first, second = render(SPEC), render({**SPEC, "title": SPEC["title"].replace("统计报表", "归因分析")})
    band = slice(0, 90)  # the title
    assert (first[band] != second[band]).sum() > 500
    assert (first[band] < 128).sum() > 2_000  # and the title is there at all
    assert (first[90:] == second[90:]).all()  # the rest of the chart is the same


ODD_SPECS = [
    pytest.param({}, id="empty spec"),
    pytest.param({"title": "统计", "funnel": [], "trend": {"days": [], "series": {}},
                  "leaderboard": {"title": "伙伴排行", "rows": []}}, id="empty panels"),
    pytest.param({"title": "Report", "funnel": None, "trend": None, "leaderboard": None}, id="null panels"),
    pytest.param({"title": "统计", "funnel": [["送达", 0], ["分享", 0], ["线索", 0]],
                  "trend": {"days": [f"11-{d}" for d in range(15, 29)], "series": {"分享": [0] * 14, "线索": [0] * 14}},
                  "leaderboard": {"title": "伙伴排行", "rows": [["星河科技", 0], ["Blue Ocean", 0]]}}, id="all zeros"),
    pytest.param({"title": "统计", "funnel": [["送达", 5]], "trend": {"days": ["11-28"], "series": {"分享": [3]}},
                  "leaderboard": {"title": "伙伴排行", "rows": [["星河科技", 7]]}}, id="one row"),
    pytest.param({"title": "长" * 80, "funnel": [["步" * 40, 5], ["x" * 40, 2]],
                  "trend": {"days": SPEC["trend"]["days"], "series": {"序" * 40: [1] * 14, "Series " * 6: [2] * 14}},
                  "leaderboard": {"title": "榜" * 40, "rows": [["上海" * 20, 9], ["Acme Holdings " * 3, 4]]}},
                 id="40-character names"),
    pytest.param({**SPEC, "leaderboard": {"title": "Partners · unique clicks",
                                          "rows": [[f"Partner {i}", 12 - i] for i in range(12)]}}, id="10 rows and more"),
    pytest.param({"title": "📊 $\\frac$ 张喆 Report", "funnel": [["$x$", 1.5], ["a_b^c", None], ["n/a", "?"]],
                  "trend": {"days": [f"2026-11-{d:02d}" for d in range(1, 31)], "series": {"$y$": list(range(30))}},
                  "leaderboard": {"title": "🏆", "rows": [["🚀 $a$ 堃", 3], ["bad row"], None]}},
                 id="dollars, emoji, rare hanzi, odd values, 30 days"),
]


@pytest.mark.parametrize("spec", ODD_SPECS)
def test_any_spec_renders(spec: dict[str, Any]) -> None:
    assert (render(spec) < 200).sum() > 3_000


def test_charts_render_in_parallel_threads() -> None:
    specs = [SPEC, {**SPEC, "title": "归因分析"}, {**SPEC, "funnel": []},
             {**SPEC, "leaderboard": {"title": "Members", "rows": [["Ann", 3], ["Bo", 2]]}}]
    alone = [render_report(spec) for spec in specs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(render_report, specs))
    for png in together:
        Image.open(io.BytesIO(png)).verify()
    # Each thread drew its own chart, untouched by the others (compared as booleans: pytest's diff of two
    # unequal PNGs runs for minutes).
    assert [png == want for png, want in zip(together, alone)] == [True] * len(specs)


def test_a_chart_is_the_same_whatever_was_drawn_before_it_on_the_thread() -> None:
    """Each thread keeps its Agg renderer from chart to chart: nothing of one chart shows in the next."""
    first = np.asarray(Image.open(io.BytesIO(render_report(SPEC))))
    render_report({**SPEC, "title": "另一张 · 完全不同的标题", "funnel": [["送达", 9999999]], "leaderboard": {}})
    again = np.asarray(Image.open(io.BytesIO(render_report(SPEC))))
    assert first.shape == again.shape and (first == again).all()


def on_a_new_thread(specs: list[dict[str, Any]]) -> list[bytes]:
    """`specs` drawn one after another on a thread of their own (so on a figure of its own)."""
    drawn: list[bytes] = []
    thread = threading.Thread(target=lambda: drawn.extend(render_report(spec) for spec in specs))
    thread.start()
    thread.join()
    return drawn


def test_a_reused_figure_keeps_nothing_of_the_chart_before() -> None:
    """Each thread keeps its figure and changes only what a chart shows: every chart, drawn after
    another of a different kind (panels with data, empty frames, "no data" words, long and odd labels),
    is byte for byte the chart a fresh figure draws."""
    specs = [SPEC, *(param.values[0] for param in ODD_SPECS)]
    fresh = [on_a_new_thread([spec])[0] for spec in specs]
    after_the_one_before = on_a_new_thread(specs)
    after_the_one_after = on_a_new_thread(specs[::-1])[::-1]
    assert len(set(fresh)) == len(specs)  # (the specs do draw different charts)
    assert [png == want for png, want in zip(after_the_one_before, fresh)] == [True] * len(specs)
    assert [png == want for png, want in zip(after_the_one_after, fresh)] == [True] * len(specs)


def test_the_fonts_read_from_memory_draw_what_matplotlib_draws_from_the_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """bot/render/charts.py opens the bundled fonts from memory and works out their line metrics once
    (for speed): byte for byte the charts matplotlib draws opening the fonts itself."""
    from bot.render import charts

    specs = [SPEC, *(param.values[0] for param in ODD_SPECS)]
    from_memory = on_a_new_thread(specs)
    assert charts._font_in_memory.cache_info().currsize > 0  # (it was used)
    monkeypatch.setattr(charts, "_font_in_memory", lambda path, thread: None)
    monkeypatch.setattr(charts, "_height_metrics", lambda *args: (None, None, None))
    from_files = on_a_new_thread(specs)
    assert [png == want for png, want in zip(from_memory, from_files)] == [True] * len(specs)
