"""Emoji in names, companies and titles leave no empty boxes on posters (issue 18): what no available
font can draw is left out, and every character that is drawn is in the cmap of the font drawing it."""
from __future__ import annotations

from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from PIL import ImageDraw

from bot.config import ASSETS
from bot.render.posters import (BUNDLED, SYSTEM, PosterRenderer, PosterRequest, TextSpec, fit_text,
                                without_undrawable_symbols)

EMOJI_NAMES = ["🌟张伟👍🏻", "Tom 🚀", "李娜 ✨💼", "👨‍👩‍👧 王芳", "🇨🇳陈杰"]


def cmap(face: tuple[Path, int]) -> set[int]:
    with TTFont(str(face[0]), fontNumber=face[1], lazy=True) as font:
        return set(font.getBestCmap())


@pytest.mark.parametrize("name", EMOJI_NAMES)
def test_fitted_text_holds_only_characters_the_font_has(name: str) -> None:
    fitted = fit_text(name, TextSpec(x=0, y=0, max_width=600, size=48, min_size=24, weight="bold"))
    drawn = "".join(fitted.lines)
    covered = cmap(fitted.face)
    assert drawn.strip() and all(ord(c) in covered for c in drawn if not c.isspace()), drawn
    assert "".join(c for c in name if ord(c) < 0x2000 or 0x4E00 <= ord(c) <= 0x9FFF).split() == drawn.split()


def test_symbols_the_font_has_and_hanzi_it_lacks_are_kept() -> None:
    assert without_undrawable_symbols("★ 第①名 🚀", "regular") == "★ 第①名"
    assert without_undrawable_symbols("王喆", "regular") == "王喆"  # a letter: the system font, or a warning


def test_a_poster_for_an_emoji_name_draws_no_missing_glyph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    original = ImageDraw.ImageDraw.text

    def recording(self, xy, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        drawn.append(text)
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", recording)
    renderer = PosterRenderer(ASSETS / "posters", tmp_path)
    covered = set().union(*(cmap(f) for w in BUNDLED for f in (BUNDLED[w], SYSTEM[w]) if f[0].is_file()))
    for template in renderer.templates():
        drawn.clear()
        renderer.render(PosterRequest(qr_url="https://partner.example.com/t/abc", member_name="🌟张伟👍🏻",
                                      partner_name="星河科技🚀", task_title="双十二大促 🎉 限时", template=template))
        text = "".join(drawn)
        assert "张伟" in text and "星河科技" in text and "双十二大促 限时" in text
        assert all(ord(c) in covered for c in text if not c.isspace()), [c for c in text if ord(c) not in covered]
