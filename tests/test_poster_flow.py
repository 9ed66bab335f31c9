"""The heart of it, end to end: a partner taps "my poster" on a task card, gets their poster, the QR
on it leads (302) to the task's page, and the scan shows up in `me`."""
import io
from pathlib import Path

import aiohttp
import zxingcpp
from PIL import Image
from sqlalchemy import select

from bot.app import CLICKS, DB
from store.models import Share, TrackedLink
from tests.conftest import Stack, make_config, seed, start_stack
from tests.test_links import BROWSER, task_for_p1


async def test_card_button_poster_qr_redirect_and_me(sqlite_url: str, tmp_path: Path) -> None:
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.posters.cache_dir = str(tmp_path / "posters")
    stack = await start_stack(config)
    try:
        await task_for_p1(stack)
        [card] = stack.sim.bot_messages("p1")
        poster_button = next(b for b in card.body["button_list"] if b["text"] == "我的海报")
        await stack.sim.click("p1", poster_button["key"], card.body["task_id"])
        image, note = (await stack.sim.wait_for_bot_messages("p1", 3))[1:]
        assert image.msgtype == "image" and "专属海报" in note.body["content"]

        png = stack.sim.media[image.body["media_id"]][0]
        poster = Image.open(io.BytesIO(png))
        assert poster.size == (1080, 1920)
        [code] = zxingcpp.read_barcodes(poster)
        async with stack.bot[DB].session() as session:
            link = await session.scalar(select(TrackedLink).where(TrackedLink.channel == "poster"))
            assert [s.channel for s in await session.scalars(select(Share))] == ["poster"]
        assert code.text == f"{config.server.public_base_url}/t/{link.code}"

        scanned = code.text.replace(config.server.public_base_url, stack.bot_url)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as phone:
            async with phone.get(scanned, allow_redirects=False, headers={"User-Agent": BROWSER}) as response:
                assert response.status == 302
                assert response.headers["Location"].startswith("https://brand.example/spring?")
                assert "utm_medium=poster" in response.headers["Location"]
        await stack.bot[CLICKS].flush_all()
        [me] = await stack.ask("p1", "我的")
        assert me.startswith("您近 30 天：分享 1 次，独立点击 1 次")

        # Asking again reuses the rendered file and WeCom's media id: no second upload.
        uploads = stack.sim.api_calls["media/upload"]
        await stack.ask("p1", "海报 1", expect=2)
        assert stack.sim.api_calls["media/upload"] == uploads == 1
    finally:
        await stack.stop()
