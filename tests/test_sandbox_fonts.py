"""The sandbox page brings its own CJK font (issue 18): on a machine without CJK fonts (this one:
`fc-list :lang=zh` is empty) every Chinese character showed as an empty box. The simulator serves a
WOFF subset of what the page and the bot say, and the bundled font for the rest; the page is drawn
once the font is there, and its title is never cut (the channel switch moves to its own row)."""
from __future__ import annotations

import io
import re
from pathlib import Path

import aiohttp
import pytest
from fontTools.ttLib import TTFont
from playwright.async_api import expect

from bot.config import ASSETS
from bot.demo import demo_directory
from tests.conftest import make_config, start_stack
from tests.test_sandbox_browser import chromium_page

PAGE = ASSETS / "pages" / "sandbox.html"
HANDLERS = Path(__file__).resolve().parents[1] / "handlers"
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


def cmap_of(data: bytes) -> set[int]:
    with TTFont(io.BytesIO(data), lazy=True) as font:
        return set(font.getBestCmap())


async def test_the_simulator_serves_fonts_covering_the_page_and_the_bots_texts(stack) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.sim_url}/sandbox/fonts/page.woff") as r:
            assert r.status == 200 and r.content_type == "font/woff" and "max-age" in r.headers["Cache-Control"]
            page_font = await r.read()
        async with http.get(f"{stack.sim_url}/sandbox/fonts/full.otf") as r:
            assert r.status == 200
            full_font = await r.read()
        async with http.get(f"{stack.sim_url}/") as r:
            html = await r.text()
    assert page_font.startswith(b"wOFF") and len(page_font) < 400_000  # a subset, not the whole font
    covered = cmap_of(page_font)
    said = set(CJK.findall(PAGE.read_text(encoding="utf-8")))
    for module in HANDLERS.glob("*.py"):
        said |= set(CJK.findall(module.read_text(encoding="utf-8")))
    assert len(said) > 300 and not [c for c in said if ord(c) not in covered]
    assert {ord(c) for c in "梓萱璐瑶鑫"} <= cmap_of(full_font)  # names the bot never says
    assert '"PB Sandbox Sans"' in html and "/sandbox/fonts/page.woff" in html


@pytest.mark.parametrize("width", [390, 768, 1200])
async def test_the_page_draws_chinese_with_its_font_and_keeps_the_title_whole(sqlite_url: str, width: int) -> None:
    stack = await start_stack(make_config(sqlite_url), directory=demo_directory(), wechat_mode="safe")
    try:
        async with chromium_page(15_000, viewport={"width": width, "height": 760}, locale="zh-CN") as opened:
            _, page, errors = opened
            await page.goto(stack.sim_url + "/")
            await expect(page.locator("#channels")).to_be_visible()  # the switch, as in the demo
            assert await page.evaluate("""async () => {
                await document.fonts.ready;
                return document.fonts.check('15px "PB Sandbox Sans"', '合作伙伴助手 发送 使用 选择成员');
            }""")
            # Text laid out before the font arrived keeps empty boxes in Chromium's buttons: each
            # button's text must be as wide as the font draws it (a box is narrower than a hanzi).
            widths = await page.evaluate("""() => [...document.querySelectorAll('button')]
                .filter(b => b.offsetParent !== null && /[\\u4e00-\\u9fff]/.test(b.textContent))
                .map(b => {
                    const range = document.createRange(); range.selectNodeContents(b);
                    const style = getComputedStyle(b), ctx = document.createElement('canvas').getContext('2d');
                    ctx.font = `${style.fontWeight} ${style.fontSize} "PB Sandbox Sans"`;
                    return [b.textContent.trim(), range.getBoundingClientRect().width, ctx.measureText(b.textContent).width];
                })""")
            assert len(widths) >= 3, widths
            for text, laid_out, drawn in widths:
                assert abs(laid_out - drawn) <= max(2, drawn * 0.05), (text, laid_out, drawn)
            title = await page.evaluate("""() => { const h = document.querySelector('.title h1');
                                                   return [h.scrollWidth, h.clientWidth]; }""")
            assert title[0] <= title[1], f"the title is cut at {width} px: {title}"
            await page.screenshot(path=f"/tmp/sandbox-fonts-{width}.png")
            assert errors == []
    finally:
        await stack.stop()
