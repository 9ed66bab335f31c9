"""`partnerbot demo` itself: starts on a fresh SQLite file, prints the sandbox URL, answers help."""
import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import pytest

from bot.demo import DEMO_CONTENT, DEMO_WECHAT_ONLY
from tests.conftest import eventually, free_port


async def test_demo_answers_help_through_the_sandbox(tmp_path: Path) -> None:
    bot_port, sim_port = free_port(), free_port()
    env = {**os.environ, "PARTNERBOT_SERVER_PORT": str(bot_port), "PARTNERBOT_SIMULATOR_PORT": str(sim_port),
           "PARTNERBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db"}
    env.pop("PARTNERBOT_CONFIG", None)
    demo = subprocess.Popen([sys.executable, "-m", "bot", "demo"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []

        async def printed_url() -> str | None:
            line = await asyncio.to_thread(demo.stdout.readline)
            lines.append(line)
            return line.split("open the sandbox: ")[1].strip() if "open the sandbox: " in line else None

        url = await eventually(printed_url, timeout=60)
        assert url == f"http://127.0.0.1:{sim_port}/"
        # Keep reading what the demo prints: a full pipe would block its logging, and so its exit.
        reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
        reader.start()
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as page:
                assert page.status == 200 and "<html" in (await page.text()).lower()
            async with http.post(f"{url}sandbox/api/send", json={"userid": "zhangwei", "text": "帮助"}) as sent:
                assert sent.status == 200

            async def reply() -> str | None:
                async with http.get(f"{url}sandbox/api/messages", params={"userid": "zhangwei"}) as r:
                    bot = [m for m in (await r.json())["messages"] if m["direction"] == "bot"]
                return bot[0]["body"]["content"] if bot else None

            assert "张伟，您好" in await eventually(reply, timeout=15)
            async with http.post(f"{url}sandbox/api/send", json={"userid": "zhangwei", "text": "线索池"}) as sent:
                assert sent.status == 200

            async def pool_reply() -> str | None:
                async with http.get(f"{url}sandbox/api/messages", params={"userid": "zhangwei"}) as r:
                    bot = [m for m in (await r.json())["messages"] if m["direction"] == "bot"]
                return bot[1]["body"]["content"] if len(bot) > 1 else None

            listed = await eventually(pool_reply, timeout=15)
            assert "赵总" in listed and "孙女士" in listed and "李先生" not in listed and "138****0001" in listed

            # The demo's content library: 张伟 lists it and takes the article as a news card.
            async with http.post(f"{url}sandbox/api/send", json={"userid": "zhangwei", "text": "素材 1"}) as sent:
                assert sent.status == 200

            async def article() -> dict[str, str] | None:
                async with http.get(f"{url}sandbox/api/messages", params={"userid": "zhangwei"}) as r:
                    news = [m for m in (await r.json())["messages"] if m["msgtype"] == "news"]
                return news[0]["body"]["articles"][0] if news else None

            card = await eventually(article, timeout=15)
            assert card["title"] == DEMO_CONTENT[0]["title"] and "/t/" in card["url"]

            # The demo's Official Account: its menu was installed through the API, and 王芳 (outside
            # WeCom, bound on WeChat) is answered there.
            async def menu() -> list[str]:
                async with http.get(f"{url}sandbox/api/menu") as r:
                    return [b["name"] for b in (await r.json())["button"]]

            assert await eventually(menu, timeout=15) == ["任务", "线索池", "我的"]
            wangfang = {"userid": DEMO_WECHAT_ONLY["wangfang"], "channel": "wechat"}
            async with http.post(f"{url}sandbox/api/send", json={**wangfang, "text": "帮助"}) as sent:
                assert sent.status == 200

            async def wechat_reply() -> str | None:
                async with http.get(f"{url}sandbox/api/messages", params=wangfang) as r:
                    bot = [m for m in (await r.json())["messages"] if m["direction"] == "bot"]
                return bot[0]["body"]["content"] if bot else None

            assert "王芳，您好" in await eventually(wechat_reply, timeout=15)
    finally:
        demo.terminate()
        try:
            assert demo.wait(30) == 0
        except subprocess.TimeoutExpired:
            demo.kill()
            raise AssertionError("the demo did not stop within 30 s of SIGTERM; it printed:\n"
                                 + "".join(lines[-40:])) from None


@pytest.mark.clock_edges
@pytest.mark.parametrize("word", ["30d", "month", "week", "today"])
async def test_the_demos_report_shows_no_rate_over_100_percent(tmp_path: Path, word: str) -> None:
    """统计 in the demo once read 送达 2 → 分享 6 (300 %) → 独立点击 57 (950 %): stages mixed people and events.
    And every period shows data, also on the 1st of a month just after midnight (the demo's campaign
    once lay wholly in the month before, so 统计 and 归因 showed zeros there)."""
    import re
    from zoneinfo import ZoneInfo

    from bot.demo import seed_demo
    from handlers.stats import funnel_line
    from store import stats
    from store.attribution import attribute
    from store.db import Database
    from store.models import utcnow
    from tests.conftest import migrated_sqlite

    db = Database(await migrated_sqlite(tmp_path))
    try:
        async with db.session() as session:
            await seed_demo(session)
        zone = "Asia/Shanghai"
        period = stats.parse_period(word, zone, utcnow().astimezone(ZoneInfo(zone)).date())
        async with db.session() as session:
            funnel = await stats.funnel(session, stats.Scope(), period)
            credited = await attribute(session, period, "linear")
        for lang in ("zh", "en"):
            line = funnel_line(funnel, lang)
            rates = [int(r) for r in re.findall(r"(\d+)(?:\.\d)?%", line)]
            assert rates and all(rate <= 100 for rate in rates), line
        assert funnel.sharers and funnel.unique_clicks and funnel.leads and funnel.deals, funnel
        assert credited.revenue and credited.by_task and credited.by_partner, credited
    finally:
        await db.dispose()


async def test_the_demo_seeds_a_content_library_once(tmp_path: Path) -> None:
    """An article, a video link, two talk scripts (one Chinese with {姓名}{公司}{链接}), a gated whitepaper
    and a case-study image, through the
    library's own rules, added by the demo's marketer; a second start adds nothing."""
    from sqlalchemy import select

    from bot.demo import seed_demo
    from store.content import tags_of
    from store.db import Database
    from store.models import ContentItem, Member
    from tests.conftest import migrated_sqlite

    db = Database(await migrated_sqlite(tmp_path))
    try:
        for _ in range(2):
            async with db.session() as session:
                await seed_demo(session)
        async with db.session() as session:
            items = list(await session.scalars(select(ContentItem).order_by(ContentItem.id)))
            tags = await tags_of(session, [i.id for i in items])
            marketer = await session.scalar(select(Member).where(Member.userid == "demo-marketer"))
        assert [(i.id, i.kind) for i in items] == [(1, "link"), (2, "video"), (3, "script"), (4, "script"), (5, "file"),
                                               (6, "image")]
        assert all(i.status == "published" and i.audience == "all" and i.created_by == marketer.id for i in items)
        assert items[0].url.startswith("https://") and items[0].summary and sorted(tags[1]) == sorted(["制造", "案例"])
        assert all(v in items[2].body for v in ("{姓名}", "{公司}", "{链接}"))
    finally:
        await db.dispose()
