"""The WeCom simulator's news and file messages (message/send) with WeCom's rules and error codes, and
the bot's news cards fitting them (issue 16: content is shared as news cards and files)."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web

from bot.simulator import WeComSimulator
from tests.conftest import SECRETS, Stack, aes_key, free_port

AGENT_ID = 1000002


@dataclass
class Api:
    sim: WeComSimulator
    url: str
    http: aiohttp.ClientSession
    token: str = ""

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        params = {"access_token": self.token, **kwargs.pop("params", {})}
        async with self.http.request(method, f"{self.url}/cgi-bin/{path}", params=params, **kwargs) as r:
            assert r.status == 200, await r.text()
            return await r.json() if r.content_type == "application/json" else (await r.read(), r.headers)

    async def send(self, msgtype: str, part: dict[str, Any]) -> int:
        body = {"touser": "p1", "agentid": AGENT_ID, "msgtype": msgtype, msgtype: part}
        return int((await self.call("POST", "message/send", json=body))["errcode"])

    async def upload(self, content: bytes, name: str, kind: str = "file") -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("media", content, filename=name, content_type="application/pdf")
        return await self.call("POST", "media/upload", params={"type": kind}, data=form)  # type: ignore[no-any-return]


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    secret = aes_key()[:32]
    SECRETS.add(secret)
    sim = WeComSimulator(corp_id="wwtest", agent_id=AGENT_ID, secret=secret, token="t" * 10, encoding_aes_key=aes_key(),
                         callback_url=f"http://127.0.0.1:{free_port()}/wecom/callback", directory={"p1": "张伟"})
    port = free_port()
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = aiohttp.ClientSession()
    try:
        running = Api(sim, f"http://127.0.0.1:{port}", http)
        got = await running.call("GET", "gettoken", params={"corpid": "wwtest", "corpsecret": secret})
        running.token = got["access_token"]
        yield running
    finally:
        await http.close()
        await runner.cleanup()


def article(**fields: Any) -> dict[str, Any]:
    return {"title": "Spring case", "description": "How it went", "url": "https://brand.example/t/abc",
            "picurl": "https://brand.example/cover.png", **fields}


async def test_news_takes_one_to_eight_articles_within_wecoms_byte_limits(api: Api) -> None:
    assert await api.send("news", {"articles": []}) == 44003
    assert await api.send("news", {}) == 44003
    assert await api.send("news", {"articles": [article(title="")]}) == 44003
    assert await api.send("news", {"articles": [article()] * 9}) == 45008
    assert await api.send("news", {"articles": [article(title="案" * 43)]}) == 45003  # 129 bytes
    assert await api.send("news", {"articles": [article(description="x" * 513)]}) == 45004
    assert await api.send("news", {"articles": [article(url="https://b.example/" + "x" * 2048)]}) == 45005
    assert api.sim.bot_messages("p1") == []

    assert await api.send("news", {"articles": [article(title="案" * 42 + "ab", description="说" * 170)] * 8}) == 0
    [shown] = api.sim.bot_messages("p1")
    assert shown.msgtype == "news" and len(shown.body["articles"]) == 8
    assert shown.body["articles"][0]["url"] == "https://brand.example/t/abc"


async def test_a_file_message_needs_an_uploaded_file_and_shows_its_name_and_size(api: Api) -> None:
    assert await api.send("file", {"media_id": "never-uploaded"}) == 40007
    assert (await api.upload(b"%PDF", "tiny.pdf"))["errcode"] == 40006  # under 5 bytes
    assert (await api.upload(b"x" * (20 * 1024 * 1024 + 1), "huge.pdf"))["errcode"] == 40006  # over 20 MB
    pdf = b"%PDF-1.4 a whitepaper"
    uploaded = await api.upload(pdf, "2026 白皮书.pdf")
    assert uploaded["errcode"] == 0 and uploaded["type"] == "file"

    assert await api.send("file", {"media_id": uploaded["media_id"]}) == 0
    [shown] = api.sim.bot_messages("p1")
    assert shown.msgtype == "file"
    assert shown.body == {"media_id": uploaded["media_id"], "name": "2026 白皮书.pdf", "size": len(pdf)}
    content, headers = await api.call("GET", "media/get", params={"media_id": uploaded["media_id"]})
    assert content == pdf and unquote(headers["Content-Disposition"]).endswith("2026 白皮书.pdf")
    async with api.http.get(f"{api.url}/sandbox/media/{uploaded['media_id']}") as r:
        assert r.status == 200 and await r.read() == pdf

    # Temporary media live 3 days: after that neither a send nor a download finds them.
    data, kind, created = api.sim.media[uploaded["media_id"]]
    api.sim.media[uploaded["media_id"]] = (data, kind, time.time() - 3 * 86400 - 1)
    assert await api.send("file", {"media_id": uploaded["media_id"]}) == 40007
    async with api.http.get(f"{api.url}/sandbox/media/{uploaded['media_id']}") as r:
        assert (await r.json())["errcode"] == 40007


async def test_the_bots_news_card_fits_wecoms_title_limit(stack: Stack) -> None:
    """A title may hold 64 characters; in Chinese that is 192 bytes, and a news title holds 128."""
    title = "制造业数字化转型" * 8
    [added] = await stack.ask("mkt1", f"新素材 {title} | https://brand.example/long")
    assert "已添加素材 #1" in added
    await stack.ask("p1", "素材 1", expect=2)
    news = [m for m in stack.sim.bot_messages("p1") if m.msgtype == "news"]
    [shown] = news[0].body["articles"]
    assert len(shown["title"].encode()) <= 128 and shown["title"].endswith("…")
    assert title.startswith(shown["title"][:-1]) and "/t/" in shown["url"]
