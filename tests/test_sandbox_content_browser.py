"""The content library in the sandbox page, in a real headless Chromium against the real bot and
simulator (issue 16): a partner lists the demo's library, takes an article (a news card that opens
their own tracked link) and a talk script (their name filled in, line breaks kept, one tap to copy);
a file message shows as a chip that downloads the file.

Needs Debian's Chromium at /usr/bin/chromium like tests/test_sandbox_browser.py: skipped without it on
a newcomer's machine, a failure in CI.
"""
from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from bot.app import DB
from bot.demo import DEMO_CONTENT
from store.demo import seed_content
from store.models import Member, TrackedLink
from tests.conftest import Stack
from tests.test_sandbox_browser import Sandbox, chromium_page

SCREENSHOT = Path("/tmp/sandbox-content.png")
STEP_TIMEOUT_MS = 15_000


@pytest.fixture
async def library(stack: Stack) -> dict[str, int]:
    """The demo's content library in the test stack's database: title -> id."""
    async with stack.bot[DB].session() as session:
        return {item.title: item.id for item in await seed_content(session, DEMO_CONTENT)}


@pytest.fixture
async def sandbox(stack: Stack) -> AsyncIterator[Sandbox]:
    async with chromium_page(STEP_TIMEOUT_MS, viewport={"width": 1100, "height": 900}, locale="zh-CN",
                             permissions=["clipboard-read", "clipboard-write"]) as opened:
        _, page, errors = opened
        box = Sandbox(page, stack, errors)
        await page.goto(stack.sim_url + "/")
        await expect(page.locator("#member option[value='p1']")).to_have_text("张伟 (p1)")
        yield box


async def test_partner_takes_an_article_and_a_talk_script(sandbox: Sandbox, library: dict[str, int]) -> None:
    page, stack = sandbox.page, sandbox.stack
    article, script = library["制造业数字化转型：华星制造的 90 天"], library["首次联系客户"]
    await sandbox.choose("p1")

    await sandbox.type_and_enter("素材")
    listing = sandbox.bot("素材库（最新在前）")
    await expect(listing).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(listing).to_contain_text(f"#{article} [文章] 制造业数字化转型：华星制造的 90 天 · #制造 #案例")
    await expect(listing).to_contain_text(f"#{script} [话术] 首次联系客户")

    # The article: a news card with the partner's own tracked link, opened by a tap.
    await sandbox.type_and_enter(f"素材 {article}")
    card = page.locator(".msg.from-bot[data-msgtype='news']")
    await expect(card).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(card.locator(".card-title")).to_have_text("制造业数字化转型：华星制造的 90 天")
    await expect(card.locator(".card-desc")).to_contain_text("成本下降 18%")
    href = await card.locator(".card-link a").get_attribute("href")
    assert href and href.startswith(f"{stack.config.server.public_base_url}/t/"), href
    await expect(card.locator(".card-link a")).to_have_attribute("target", "_blank")
    async with stack.bot[DB].session() as session:
        link = await session.scalar(select(TrackedLink).where(TrackedLink.code == href.rsplit("/", 1)[1]))
        p1 = await session.scalar(select(Member).where(Member.userid == "p1"))
    assert link is not None and link.content_id == article and link.member_id == p1.id
    # Tapping the card opens the partner's link in a new tab (where /t/ leads is tests/test_content.py's;
    # here the link's host is answered by the test).
    await page.context.route(f"{href}*", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                      body="<title>article</title>"))
    async with page.context.expect_page() as opened:
        await card.locator(".card-body").click()
    tab = await opened.value
    await tab.wait_for_load_state()
    assert tab.url == href
    await tab.close()

    # The talk script: filled with the partner's name, company and link, line by line, ready to copy.
    await sandbox.type_and_enter(f"素材 {script}")
    filled = sandbox.bot("您好，我是星河科技的张伟。")
    await expect(filled).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    bubble = filled.locator(".bubble")
    lines = (await bubble.inner_text()).splitlines()
    assert lines[0] == "您好，我是星河科技的张伟。" and len(lines) == 4, lines
    assert re.fullmatch(rf"{re.escape(stack.config.server.public_base_url)}/t/[A-Za-z0-9_-]+", lines[2]), lines
    await filled.locator("button.copy").click()
    await expect(filled.locator("button.copy")).to_have_text("已复制 / Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == "\n".join(lines)

    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    sandbox.assert_clean()


async def test_a_file_message_is_a_chip_that_downloads_the_file(sandbox: Sandbox) -> None:
    page, sim = sandbox.page, sandbox.stack.sim
    pdf = b"%PDF-1.4 " + b"0" * 2400
    sim.media["wp-media"] = (pdf, "application/pdf", time.time())
    sim.media_names["wp-media"] = "2026 制造业白皮书.pdf"
    await sandbox.choose("p1")
    sim.record("p1", "bot", "file", {"media_id": "wp-media", "name": "2026 制造业白皮书.pdf", "size": len(pdf)})

    chip = page.locator(".msg.from-bot[data-msgtype='file'] a.file-chip")
    await expect(chip).to_contain_text("2026 制造业白皮书.pdf")
    await expect(chip).to_contain_text("2.4 KB")
    await expect(chip.locator(".file-icon")).to_have_text("PDF")
    async with page.expect_download() as downloading:
        await chip.click()
    download = await downloading.value
    assert download.suggested_filename == "2026 制造业白皮书.pdf"
    assert Path(await download.path()).read_bytes() == pdf
    sandbox.assert_clean()


async def test_marketer_sends_a_picture_from_the_page_and_keeps_it(sandbox: Sandbox) -> None:
    """The 📎 button sends a picture as a WeCom image message; the bot offers 收录, which keeps it."""
    from bot.demo import case_study_png
    from store.content_files import file_bytes

    page, stack = sandbox.page, sandbox.stack
    await sandbox.choose("mkt1")
    data = case_study_png()
    await page.locator("#attach-file").set_input_files(files=[{"name": "案例.png", "mimeType": "image/png", "buffer": data}])
    await expect(page.locator(".msg.from-user[data-msgtype='image'] img")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(sandbox.bot("收录 标题 | 标签…")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await sandbox.type_and_enter("收录 华星案例 | 制造")
    kept = sandbox.bot("已收录为素材 #")
    await expect(kept).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    content_id = int(re.search(r"#(\d+)", await kept.inner_text()).group(1))
    async with stack.bot[DB].session() as session:
        assert await file_bytes(session, content_id) == data
    sandbox.assert_clean()
