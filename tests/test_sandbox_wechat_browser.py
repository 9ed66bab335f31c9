"""The sandbox page's WeChat channel in a real headless Chromium, against the real bot and the simulated
Official Account (safe mode): a bound follower does the whole partner flow through the page alone —
the task card (a message menu), its poster item, the bottom menu, typed commands.

Needs Debian's Chromium at /usr/bin/chromium like tests/test_sandbox_browser.py: skipped without it on
a newcomer's machine, a failure in CI.
"""
from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Locator, expect

from bot.cli import install_menu
from tests.conftest import FOLLOWERS, Stack, make_config, seed, start_stack
from tests.test_pool import PHONES, add_leads
from tests.test_sandbox_browser import Sandbox, chromium_page

P2_WX = "oWxFollower000000000000000p2"
SCREENSHOT = Path("/tmp/sandbox-wechat.png")
STEP_TIMEOUT_MS = 15_000
POSTER_TIMEOUT_MS = 20_000


@pytest.fixture
async def wx_stack(sqlite_url: str) -> AsyncIterator[Stack]:
    """Bot + WeCom simulator + a safe-mode Official Account, on SQLite with the standard members."""
    await seed(sqlite_url)
    running = await start_stack(make_config(sqlite_url), wechat_mode="safe")
    yield running
    await running.stop()


async def bind_p2(stack: Stack) -> None:
    """admin1 makes a binding code for p2 in WeCom; the follower sends it to the Official Account."""
    [reply] = await stack.ask("admin1", "bindcode p2")
    match = re.search(r": ([A-Z2-9]{8})", reply)
    assert match, reply
    [bound] = await stack.ask_wechat(P2_WX, f"bind {match.group(1)}")
    assert bound.startswith("Bound: this WeChat is now Li Na"), bound


class WeChatPage(Sandbox):
    """The sandbox page on its WeChat channel: the bottom menu and the keyboard take turns."""

    def menu(self, name: str) -> Locator:
        # A folder's accessible name carries its "≡" marker: match the buttons' own text instead.
        buttons = self.page.locator("#wx-menu .wx-top, #wx-menu .wx-sub")
        return buttons.filter(has_text=re.compile(f"^{re.escape(name)}$"))

    async def keyboard(self) -> None:
        await self.page.locator("#wx-menu .wx-kbd").click()
        await expect(self.page.locator("#text")).to_be_visible()

    async def show_menu(self) -> None:
        await self.page.locator("#menu-toggle").click()
        await expect(self.page.locator("#wx-menu")).to_be_visible()

    def bubble(self, text: str) -> Locator:
        return self.bot(text).locator(".bubble")


async def test_a_bound_follower_does_the_whole_partner_flow_in_the_page(
        wx_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stack's renderer caches posters under the relative "var/posters": keep them out of the checkout.
    monkeypatch.chdir(tmp_path)
    stack, wechat = wx_stack, wx_stack.wechat
    assert wechat is not None and P2_WX in FOLLOWERS
    await bind_p2(stack)
    await install_menu(stack.config)  # through the real menu/create API
    lead_ids = await add_leads(stack.config.database.url)
    lead = lead_ids[3]  # in Blue Ocean's pool, p2's partner

    async with chromium_page(STEP_TIMEOUT_MS, viewport={"width": 1100, "height": 860}, locale="zh-CN") as opened:
        _, page, errors = opened
        box = WeChatPage(page, stack, errors)
        await page.goto(stack.sim_url + "/")
        await expect(page.locator("#member option[value='p1']")).to_have_text("张伟 (p1)")
        await page.locator("#channels button[data-channel='wechat']").click()
        await expect(page.locator("#channels button[data-channel='wechat']")).to_have_attribute("aria-pressed", "true")
        await box.choose(P2_WX)
        await expect(page.locator("#member option:checked")).to_have_text(f"Li Na (WeChat) ({P2_WX})")
        # The binding conversation is there; the installed menu replaces the keyboard.
        await expect(box.bot("Bound: this WeChat is now Li Na")).to_have_count(1)
        await expect(page.locator("#wx-menu")).to_be_visible()
        await expect(page.locator("#composer")).to_be_hidden()
        card = page.locator(".msg.from-bot[data-msgtype='msgmenu']")
        await expect(card).to_have_count(0)

        # The marketer broadcasts in WeCom while the follower watches: the task card arrives by itself.
        [created] = await stack.ask("mkt1", "newtask Spring | https://brand.example/spring")
        assert "Task #1 created" in created, created
        [sent] = await stack.ask("mkt1", 'broadcast 1 partner:"Blue Ocean" confirm')
        assert "on its way to 1 member(s)" in sent, sent
        await expect(card).to_have_count(1, timeout=STEP_TIMEOUT_MS)
        await expect(card.locator(".mm-head")).to_contain_text("新任务 #1：Spring")
        await expect(card).to_contain_text("客服消息")  # a customer-service message, not a passive reply
        items = card.locator(".mm-item")
        await expect(items).to_have_text(["海报 1", "链接 1", "任务 1"])
        assert not stack.sim.bot_messages("p2"), "a bound partner's push went to WeCom"

        # Tapping "海报 1" sends it as the follower's own text; the poster and its note come back.
        await items.filter(has_text="海报 1").click()
        mine = page.locator(".msg.from-user[data-msgtype='text']").filter(
            has=page.locator(".bubble", has_text=re.compile(r"^海报 1$")))
        await expect(mine).to_have_count(1, timeout=STEP_TIMEOUT_MS)
        await expect(mine).to_contain_text("delivered", timeout=STEP_TIMEOUT_MS)
        assert [e.body["content"] for e in wechat.entries
                if e.userid == P2_WX and e.direction == "user" and e.msgtype == "text"][-1] == "海报 1"
        image = page.locator(".msg.from-bot[data-msgtype='image'] img")
        await expect(image).to_have_count(1, timeout=POSTER_TIMEOUT_MS)
        await expect(box.bot("专属海报")).to_have_count(1, timeout=POSTER_TIMEOUT_MS)
        [poster] = [m for m in wechat.bot_messages(P2_WX) if m.msgtype == "image"]
        await expect(image).to_have_attribute("src", f"/sandbox/media/{poster.body['media_id']}")
        handle = await image.element_handle()
        await page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle,
                                     timeout=POSTER_TIMEOUT_MS)
        # The bytes the page shows carry p2's tracked link.
        response = await page.request.get(await image.evaluate("img => img.src"))
        assert response.ok and response.headers["content-type"] == "image/png", response.status
        [qr] = zxingcpp.read_barcodes(Image.open(io.BytesIO(await response.body())))
        prefix = f"{stack.config.server.public_base_url}/t/"
        assert qr.text.startswith(prefix) and len(qr.text) > len(prefix), qr.text

        # The bottom menu: 任务 lists the task.
        await box.menu("任务").click()
        await expect(page.locator(".msg.from-user[data-msgtype='click']").filter(has_text="任务")).to_have_count(1)
        await expect(box.bot("#1 Spring")).to_have_count(1, timeout=STEP_TIMEOUT_MS)

        # 我的 → 我的链接: the newest task's tracked link.
        await box.menu("我的").click()
        await expect(page.locator("#wx-menu .wx-pop")).to_be_visible()
        await box.menu("我的链接").click()
        await expect(page.locator("#wx-menu .wx-pop")).to_be_hidden()
        link = box.bot("任务 #1 的专属链接")
        await expect(link).to_have_count(1, timeout=STEP_TIMEOUT_MS)
        await expect(link).to_contain_text(prefix)

        # The keyboard: the pool (phones masked), then a claim (the phone revealed to the owner).
        await box.keyboard()
        await box.type_and_enter("线索池")
        pool = box.bot(f"#{lead} 李先生")
        await expect(pool).to_have_count(1, timeout=STEP_TIMEOUT_MS)
        await expect(pool).to_contain_text("138****0004")
        await expect(pool).not_to_contain_text(PHONES[3])
        await box.type_and_enter(f"领取 {lead}")
        claimed = box.bubble(f"线索 #{lead} 已归您")
        await expect(claimed).to_have_count(1, timeout=STEP_TIMEOUT_MS)
        await expect(claimed).to_contain_text(PHONES[3])

        # Back to the menu: 我的 → 我的数据, the follower's figures (one poster and one link shared).
        await box.show_menu()
        await box.menu("我的").click()
        await box.menu("我的数据").click()
        figures = box.bubble("您近 30 天")
        await expect(figures).to_have_count(1, timeout=STEP_TIMEOUT_MS)
        await expect(figures).to_have_text(re.compile(r"^\s*您近 30 天：分享 2 次"))

        # Everything reached the bot over the Official Account; the card went out once.
        await expect(card).to_have_count(1)
        await expect(page.locator(".meta.failed")).to_have_count(0)
        await page.screenshot(path=str(SCREENSHOT), animations="disabled")
        box.assert_clean()
