"""The simulated WeChat Official Account, checked independently of its own code: signatures are
computed here with hashlib, callbacks are decrypted and parsed with wechatpy, and passive replies are
built with wechatpy's reply classes, the way a real bot on WeChat would."""
from __future__ import annotations

import asyncio
import hashlib
import io
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import wechatpy
from aiohttp import web
from PIL import Image
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import ArticlesReply, ImageReply, TextReply

from bot.simulator import WeChatSimulator, WeComSimulator
from bot.simulator.server import ChatEntry, Delivery
from tests.conftest import SECRETS, aes_key, free_port

APP_ID = "wxtest0000000001"
ORIGINAL_ID = "gh_test000000001"
ALICE = "oAlice_000000000000000000001"  # 28 characters, like real openids
BOB = "oBob-00000000000000000000002"
STRANGER = "oStranger0000000000000000003"
HOUR = 3600


def sha1_sorted(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "PNG")
    return out.getvalue()


@dataclass
class FakeBot:
    """A bot's WeChat callback endpoint: verifies everything WeChat sends, then answers as told."""

    token: str
    crypto: WeChatCrypto
    mode: str
    answer: Callable[[Any], str] = lambda message: "success"
    encrypt_replies: bool = True
    tamper: Callable[[str], str] = lambda reply: reply
    delay: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        query, body = request.query, await request.text()
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if request.method == "GET":  # URL verification
            ok = query.get("signature") == sha1_sorted(self.token, timestamp, nonce)
            return web.Response(text=query.get("echostr", "") if ok else "", status=200 if ok else 403)
        if query.get("signature") != sha1_sorted(self.token, timestamp, nonce):
            self.problems.append("bad signature")
            return web.Response(status=403)
        if self.mode == "plain":
            if "encrypt_type" in query or "msg_signature" in query or "<Encrypt>" in body:
                self.problems.append("encryption in plain mode")
            plaintext = body
        else:
            encrypted = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", body).group(1)  # type: ignore[union-attr]
            if query.get("encrypt_type") != "aes" or \
                    query.get("msg_signature") != sha1_sorted(self.token, timestamp, nonce, encrypted):
                self.problems.append("bad msg_signature")
                return web.Response(status=403)
            plaintext = self.crypto.decrypt_message(body, query["msg_signature"], timestamp, nonce)
            carries_plaintext = "<FromUserName>" in body
            if carries_plaintext != (self.mode == "compatible"):
                self.problems.append(f"{self.mode} body: plaintext fields present = {carries_plaintext}")
        message = wechatpy.parse_message(plaintext)
        if query.get("openid") != message.source:
            self.problems.append("openid in the query differs from FromUserName")
        self.seen.append({"query": dict(query), "body": body, "plaintext": plaintext, "message": message})
        await asyncio.sleep(self.delay)
        reply = self.answer(message)
        if reply not in ("", "success") and self.mode != "plain" and self.encrypt_replies:
            reply = self.crypto.encrypt_message(reply, nonce, timestamp)
        return web.Response(text=self.tamper(reply), content_type="application/xml")


@dataclass
class Env:
    wecom: WeComSimulator
    wechat: WeChatSimulator
    bot: FakeBot
    url: str  # the simulator: sandbox at /, Official Account API at /mp
    http: aiohttp.ClientSession

    async def token(self) -> str:
        async with self.http.get(f"{self.url}/mp/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": APP_ID, "secret": self.wechat.secret}) as r:
            return (await r.json())["access_token"]

    async def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        params = {"access_token": token if token is not None else await self.token(), **kwargs.pop("params", {})}
        async with self.http.request(method, f"{self.url}/mp/cgi-bin/{path}", params=params, **kwargs) as r:
            assert r.status == 200, await r.text()
            return await r.json() if r.content_type == "application/json" else await r.read()

    async def send(self, touser: str, msgtype: str = "text", **part: Any) -> dict[str, Any]:
        part = part or {"content": "hello"}
        return await self.api("POST", "message/custom/send", json={"touser": touser, "msgtype": msgtype, msgtype: part})


async def start_env(mode: str = "safe", **options: Any) -> tuple[Env, list[web.AppRunner]]:
    token, key, secret = "tok" + aes_key()[:12], aes_key(), aes_key()[:32]
    SECRETS.update({token, key, secret})
    bot = FakeBot(token, WeChatCrypto(token, key, APP_ID), mode)
    bot_port, sim_port = free_port(), free_port()
    wechat = WeChatSimulator(app_id=APP_ID, secret=secret, token=token, encoding_aes_key=key, mode=mode,
                             callback_url=f"http://127.0.0.1:{bot_port}/wechat/callback", original_id=ORIGINAL_ID,
                             followers={ALICE: "Alice", BOB: "Bob"}, **options)
    wecom = WeComSimulator(corp_id="wwtest", agent_id=1000002, secret="s" * 20, token="t" * 10,
                           encoding_aes_key=aes_key(), callback_url=f"http://127.0.0.1:{bot_port}/wecom/callback",
                           directory={"p1": "张伟"}, wechat=wechat)
    bot_app = web.Application()
    bot_app.router.add_route("*", "/wechat/callback", bot.handle)
    runners = []
    for app, port in ((bot_app, bot_port), (wecom.create_app(), sim_port)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    return Env(wecom, wechat, bot, f"http://127.0.0.1:{sim_port}", aiohttp.ClientSession()), runners


@pytest.fixture(params=["safe"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    running, runners = await start_env(request.param)
    yield running
    await running.http.close()
    for runner in reversed(runners):
        await runner.cleanup()
    assert running.bot.problems == []


modes = pytest.mark.parametrize("env", ["plain", "compatible", "safe"], indirect=True)


# ----- access tokens -------------------------------------------------------------------------------
async def test_token_errors_and_lifetime(env: Env) -> None:
    async def get(**params: str) -> dict[str, Any]:
        async with env.http.get(f"{env.url}/mp/cgi-bin/token", params=params) as r:
            assert r.status == 200  # WeChat reports errors in the JSON, not the status
            return await r.json()

    good = {"grant_type": "client_credential", "appid": APP_ID, "secret": env.wechat.secret}
    assert (await get(**{**good, "grant_type": "password"}))["errcode"] == 40002
    assert (await get(**{**good, "appid": "wxother"}))["errcode"] == 40013
    assert (await get(**{**good, "secret": "x" * 32}))["errcode"] == 40001
    issued = await get(**good)
    assert issued["expires_in"] == 7200 and "errcode" not in issued

    env.wechat.last_interaction[ALICE] = time.time()
    assert (await env.send(ALICE))["errcode"] == 0
    assert (await env.api("POST", "message/custom/send", token="", json={}))["errcode"] == 41001
    unknown = await env.api("POST", "message/custom/send", token="nope", json={})
    assert unknown["errcode"] == 40001 and "access_token is invalid" in unknown["errmsg"]
    env.wechat.tokens[issued["access_token"]] = time.time() - 1
    assert (await env.api("GET", "menu/get", token=issued["access_token"]))["errcode"] == 42001
    # A new token leaves the previous one usable for 5 minutes only.
    first = await env.token()
    await env.token()
    assert env.wechat.tokens[first] <= time.time() + 300
    assert env.wechat.api_calls["token"] >= 6


async def test_outage_answers_503(env: Env) -> None:
    env.wechat.api_available = False
    async with env.http.get(f"{env.url}/mp/cgi-bin/token") as r:
        assert r.status == 503
    env.wechat.api_available = True
    assert await env.token()


# ----- customer-service messages -------------------------------------------------------------------
async def test_custom_send_validation(env: Env) -> None:
    env.wechat.reply_quota = False  # this test is about the payloads; the quota has its own test
    env.wechat.last_interaction[ALICE] = time.time()
    assert (await env.send(ALICE, content="你好"))["errcode"] == 0
    [sent] = env.wechat.bot_messages(ALICE)
    assert (sent.msgtype, sent.body, sent.channel) == ("text", {"content": "你好", "via": "custom"}, "wechat")

    assert (await env.send(STRANGER))["errcode"] == 40003
    assert (await env.send(ALICE, content=""))["errcode"] == 44004
    assert (await env.send(ALICE, content="字" * 683))["errcode"] == 45002  # 2,049 bytes
    assert (await env.send(ALICE, content="a" * 2048))["errcode"] == 0
    assert (await env.send(ALICE, "voice", media_id="x"))["errcode"] == 40008
    assert (await env.send(ALICE, "image", media_id="unknown"))["errcode"] == 40007
    article = {"title": "Spring", "description": "d", "url": "https://brand.example/s", "picurl": ""}
    assert (await env.send(ALICE, "news", articles=[article, article]))["errcode"] == 45008
    assert (await env.send(ALICE, "news", articles=[{**article, "url": "javascript:x"}]))["errcode"] == 47001
    assert (await env.send(ALICE, "news", articles=[article]))["errcode"] == 0
    assert env.wechat.bot_messages(ALICE)[-1].body == {"articles": [article], "via": "custom"}

    env.wechat.fail_next_sends(-1)
    env.wechat.fail_next_sends(45047)
    assert [(await env.send(ALICE))["errcode"] for _ in range(3)] == [-1, 45047, 0]

    # The 48-hour window: Bob never wrote; Alice's last message is 48 hours and a minute old.
    assert (await env.send(BOB))["errcode"] == 45015
    env.wechat.last_interaction[ALICE] = time.time() - 48 * HOUR - 60
    closed = await env.send(ALICE)
    assert closed["errcode"] == 45015 and "out of time limit" in closed["errmsg"]
    env.wechat.unfollowed.add(STRANGER)
    assert (await env.send(STRANGER))["errcode"] == 43004
    assert len(env.wechat.bot_messages(ALICE)) == 4
    assert env.wechat.api_calls["custom/send"] == 16


async def test_custom_send_quota_per_interaction(env: Env) -> None:
    """Since 2023: 5 messages in 48 h after a typed message, 3 within a minute of a menu click."""
    assert (await env.wechat.send_text(ALICE, "hi")).acknowledged
    assert [(await env.send(ALICE))["errcode"] for _ in range(6)] == [0, 0, 0, 0, 0, 45047]

    env.wechat.menu = {"button": [{"type": "click", "name": "帮助", "key": "help", "sub_button": []}]}
    assert (await env.wechat.click_menu(BOB, "help")).acknowledged
    assert [(await env.send(BOB))["errcode"] for _ in range(4)] == [0, 0, 0, 45047]
    await env.wechat.click_menu(BOB, "help")
    assert (await env.send(BOB))["errcode"] == 0
    for grant in env.wechat._grants[BOB]:  # a minute later the click allowance is gone
        grant[1] -= 61
    env.wechat.last_interaction[BOB] -= 61
    assert (await env.send(BOB))["errcode"] == 45015


# ----- media ---------------------------------------------------------------------------------------
async def test_media_upload_and_get(env: Env) -> None:
    token = await env.token()

    async def upload(content: bytes, kind: str = "image") -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("media", content, filename="p.png", content_type="image/png")
        return await env.api("POST", "media/upload", token=token, params={"type": kind}, data=form)

    uploaded = await upload(png_bytes())
    assert uploaded["type"] == "image" and isinstance(uploaded["created_at"], int)
    assert await env.api("GET", "media/get", token=token, params={"media_id": uploaded["media_id"]}) == png_bytes()
    async with env.http.get(f"{env.url}/sandbox/media/{uploaded['media_id']}") as r:
        assert r.status == 200 and await r.read() == png_bytes()

    assert (await upload(b"GIF89a" + b"\0" * 10))["type"] == "image"
    assert (await upload(b"%PDF-1.4 not a picture"))["errcode"] == 40005
    assert (await upload(b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024)))["errcode"] == 40009
    assert (await upload(png_bytes(), kind="doc"))["errcode"] == 40004
    assert (await env.api("GET", "media/get", token=token, params={"media_id": "nope"}))["errcode"] == 40007
    content, kind, created = env.wechat.media[uploaded["media_id"]]
    env.wechat.media[uploaded["media_id"]] = (content, kind, created - 3 * 86400 - 1)  # temporary media: 3 days
    expired = await env.api("GET", "media/get", token=token, params={"media_id": uploaded["media_id"]})
    assert expired["errcode"] == 40007


# ----- menus ---------------------------------------------------------------------------------------
def click(name: str = "帮助", key: str = "help") -> dict[str, Any]:
    return {"type": "click", "name": name, "key": key}


def view(name: str = "官网", url: str = "https://brand.example/") -> dict[str, Any]:
    return {"type": "view", "name": name, "url": url}


@pytest.mark.parametrize("menu, errcode", [
    ({}, 40016),
    ({"button": []}, 40016),
    ({"button": [click(), click(), click(), click()]}, 40016),
    ({"button": [click(name="五个汉字按XY")]}, 40018),  # 17 bytes; 16 is the most
    ({"button": [{"name": "更多", "sub_button": [click(name="字" * 21)]}]}, 40018),  # 63 bytes
    ({"button": [{"name": "更多", "sub_button": [click()] * 6}]}, 40023),
    ({"button": [{"name": "更多"}]}, 40017),
    ({"button": [{"type": "bogus", "name": "x", "key": "k"}]}, 40017),
    ({"button": [{"type": "click", "name": "x"}]}, 40019),
    ({"button": [click(key="k" * 129)]}, 40019),
    ({"button": [view(url="ftp://brand.example/")]}, 40055),
    ({"button": [{"name": "更多", "sub_button": [view(url="brand.example")]}]}, 40054),
    ({"button": [view(url="https://brand.example/" + "a" * 1024)]}, 40020),
])
async def test_menu_create_rejects_what_wechat_rejects(env: Env, menu: dict[str, Any], errcode: int) -> None:
    answer = await env.api("POST", "menu/create", json=menu)
    assert answer["errcode"] == errcode, answer
    assert env.wechat.menu is None


async def test_menu_create_and_get(env: Env) -> None:
    assert (await env.api("GET", "menu/get"))["errcode"] == 46003
    menu = {"button": [click("帮助", "help"), {"name": "任务", "sub_button": [click("我的任务", "tasks"),
                                                                             view("官网")]},
                       click("五个汉字按", "k5")]}
    assert await env.api("POST", "menu/create", json=menu) == {"errcode": 0, "errmsg": "ok"}
    got = (await env.api("GET", "menu/get"))["menu"]
    assert got["button"][0] == {**click("帮助", "help"), "sub_button": []}
    assert [b["name"] for b in got["button"][1]["sub_button"]] == ["我的任务", "官网"]
    assert env.wechat.menu_keys() == {"help": "帮助", "tasks": "我的任务", "k5": "五个汉字按"}
    async with env.http.get(f"{env.url}/sandbox/api/menu") as r:
        assert await r.json() == got


# ----- callbacks -----------------------------------------------------------------------------------
@modes
async def test_callback_acknowledged_with_success(env: Env) -> None:
    before = time.time()
    typed = "帮助 ]]> <b></xml>"  # CDATA's end and an XML end tag travel as text
    delivery = await env.wechat.send_text(ALICE, typed)
    assert (delivery.attempts, delivery.reply, delivery.error) == (["200"], None, None)
    [seen] = env.bot.seen
    message = seen["message"]
    assert (message.type, message.source, message.target, message.content) == ("text", ALICE, ORIGINAL_ID, typed)
    assert 0 < message.id < 2**63 and str(message.id) == delivery.msg_id
    assert env.wechat.last_interaction[ALICE] >= before
    [entry] = [e for e in env.wechat.entries if e.userid == ALICE]
    assert (entry.direction, entry.status, entry.channel) == ("user", "delivered", "wechat")
    assert env.wechat.bot_messages(ALICE) == []
    if env.wechat.mode == "safe":  # nothing but the addressee and the ciphertext
        assert re.fullmatch(r"<xml><ToUserName><!\[CDATA\[gh_test000000001\]\]></ToUserName>"
                            r"<Encrypt><!\[CDATA\[[A-Za-z0-9+/=]+\]\]></Encrypt></xml>", seen["body"])


@modes
async def test_passive_text_reply(env: Env) -> None:
    env.bot.answer = lambda message: TextReply(message=message, content=f"收到：{message.content}").render()
    delivery = await env.wechat.send_text(ALICE, "hi")
    assert delivery.reply == {"msgtype": "text", "content": "收到：hi"} and delivery.error is None
    [reply] = env.wechat.bot_messages(ALICE)
    assert (reply.msgtype, reply.body, reply.channel) == ("text", {"content": "收到：hi", "via": "passive"}, "wechat")
    assert await env.wechat.wait_for_bot_messages(ALICE, 1, timeout=1) == [reply]


@modes
async def test_passive_image_and_news_replies(env: Env) -> None:
    media_id = "m" * 64
    env.wechat.media[media_id] = (png_bytes(), "image/png", time.time())
    env.bot.answer = lambda message: ImageReply(message=message, media_id=media_id).render()
    assert (await env.wechat.send_text(ALICE, "poster")).reply == {"msgtype": "image", "media_id": media_id}

    article = {"title": "Spring", "description": "d", "image": "https://brand.example/p.png",
               "url": "https://brand.example/s"}
    env.bot.answer = lambda message: ArticlesReply(message=message, articles=[article, article]).render()
    # To a typed message WeChat takes a single article; to an event (the subscribe here) up to 8.
    assert "ArticleCount" in (await env.wechat.send_text(ALICE, "news")).error  # type: ignore[operator]
    delivery = await env.wechat.subscribe(STRANGER, "New")
    assert delivery.reply == {"msgtype": "news", "articles": [
        {"title": "Spring", "description": "d", "picurl": "https://brand.example/p.png",
         "url": "https://brand.example/s"}] * 2}
    assert env.wechat.followers[STRANGER] == "New"
    assert [(e.msgtype, e.body.get("via")) for e in env.wechat.bot_messages()] == [
        ("image", "passive"), ("news", "passive")]

    env.bot.answer = lambda message: ImageReply(message=message, media_id="never-uploaded").render()
    assert "MediaId" in (await env.wechat.send_text(ALICE, "again")).error  # type: ignore[operator]


@modes
async def test_bad_passive_reply_is_a_service_failure(env: Env) -> None:
    env.bot.answer = lambda message: TextReply(message=message, content="forged").render()
    if env.wechat.mode == "plain":
        env.bot.tamper = lambda reply: reply.replace(ALICE, BOB)  # addressed to someone else
    else:
        env.bot.tamper = lambda reply: re.sub(r"<MsgSignature><!\[CDATA\[\w+", "<MsgSignature><![CDATA[" + "0" * 40,
                                              reply)
    delivery = await env.wechat.send_text(ALICE, "hi")
    assert delivery.attempts == ["200"] and delivery.reply is None
    assert ("ToUserName" if env.wechat.mode == "plain" else "MsgSignature") in delivery.error  # type: ignore[operator]
    assert env.wechat.bot_messages(ALICE) == []
    [entry] = [e for e in env.wechat.entries if e.userid == ALICE]
    assert entry.status == "failed" and entry.body["error"] == delivery.error

    env.bot.tamper = lambda reply: "<xml><oops"
    assert "not XML" in (await env.wechat.send_text(ALICE, "hi")).error  # type: ignore[operator]


@pytest.mark.parametrize("env", ["safe"], indirect=True)
async def test_plaintext_reply_refused_in_safe_mode_but_taken_in_compatible(env: Env) -> None:
    env.bot.encrypt_replies = False
    env.bot.answer = lambda message: TextReply(message=message, content="plain").render()
    assert "plaintext reply in safe mode" in (await env.wechat.send_text(ALICE, "hi")).error  # type: ignore[operator]
    env.wechat.mode = env.bot.mode = "compatible"
    assert (await env.wechat.send_text(ALICE, "hi")).reply == {"msgtype": "text", "content": "plain"}


@modes
async def test_slow_answer_is_retried_with_the_same_message(env: Env) -> None:
    env.wechat.callback_timeout = 0.3
    env.bot.delay = 1.0
    delivery = await env.wechat.send_text(ALICE, "slow")
    assert delivery.attempts == ["timeout"] * 3 and not delivery.acknowledged
    assert len(env.bot.seen) == 3
    assert len({(s["message"].id, s["message"].create_time) for s in env.bot.seen}) == 1
    assert len({s["query"]["nonce"] for s in env.bot.seen}) == 3  # each attempt is signed anew
    [entry] = [e for e in env.wechat.entries if e.userid == ALICE]
    assert entry.status == "failed"


async def test_menu_click_and_unsubscribe_events(env: Env) -> None:
    env.wechat.menu = {"button": [{"type": "click", "name": "帮助", "key": "help", "sub_button": []}]}
    delivery = await env.wechat.click_menu(BOB, "help")
    message = env.bot.seen[-1]["message"]
    assert (message.type, message.event, message.key, message.source) == ("event", "click", "help", BOB)
    assert "<MsgId>" not in env.bot.seen[-1]["plaintext"]
    assert delivery.msg_id == f"{BOB}:{int(message.create_time.timestamp())}"
    assert [e.body for e in env.wechat.entries if e.direction == "user"] == [{"key": "help", "name": "帮助"}]

    env.wechat.last_interaction.pop(BOB)
    await env.wechat.unsubscribe(BOB)
    assert env.bot.seen[-1]["message"].event == "unsubscribe"
    assert BOB not in env.wechat.followers and BOB not in env.wechat.last_interaction
    assert (await env.send(BOB))["errcode"] == 43004


async def test_url_verification_and_encrypt_callback(env: Env) -> None:
    assert await env.wechat.verify_url()
    query, body = env.wechat.encrypt_callback(env.wechat.text_xml(ALICE, "x", "123", 1700000000), timestamp=1700000000)
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert params["timestamp"] == "1700000000" and params["openid"] == ALICE and params["encrypt_type"] == "aes"
    assert params["signature"] == sha1_sorted(env.wechat.token, "1700000000", params["nonce"])
    plaintext = env.bot.crypto.decrypt_message(body.decode(), params["msg_signature"], "1700000000", params["nonce"])
    assert "<MsgId>123</MsgId>" in plaintext
    with pytest.raises(ValueError):
        WeChatSimulator(app_id=APP_ID, secret="s", token="t", encoding_aes_key=aes_key(), callback_url="http://x/",
                        mode="raw")


# ----- the sandbox page's API ----------------------------------------------------------------------
async def test_sandbox_endpoints_with_wechat(env: Env) -> None:
    env.bot.answer = lambda message: TextReply(message=message, content="hello from the bot").render()

    async def post(path: str, **body: Any) -> tuple[int, dict[str, Any]]:
        async with env.http.post(f"{env.url}/sandbox/api/{path}", json=body) as r:
            return r.status, await r.json()

    async def messages(userid: str, **params: str) -> list[dict[str, Any]]:
        async with env.http.get(f"{env.url}/sandbox/api/messages", params={"userid": userid, **params}) as r:
            return (await r.json())["messages"]

    async with env.http.get(f"{env.url}/sandbox/api/members") as r:
        listed = await r.json()
    assert listed["channels"] == ["wecom", "wechat"]
    assert listed["members"] == [{"userid": "p1", "name": "张伟", "channel": "wecom"},
                                 {"userid": ALICE, "name": "Alice", "channel": "wechat"},
                                 {"userid": BOB, "name": "Bob", "channel": "wechat"}]

    env.wecom.record("p1", "bot", "text", {"content": "wecom first"})
    assert await post("send", userid=ALICE, text="hi", channel="wechat") == (200, {"ok": True})
    await env.wechat.wait_for_bot_messages(ALICE, 1)
    chat = await messages(ALICE, channel="wechat")
    assert [(m["direction"], m["body"]["content"], m["channel"]) for m in chat] == [
        ("user", "hi", "wechat"), ("bot", "hello from the bot", "wechat")]
    assert chat[0]["id"] > 1  # one id sequence across both channels
    assert await messages(ALICE, channel="wechat", after=str(chat[0]["id"])) == chat[1:]
    assert await messages(ALICE) == []  # the default channel is WeCom
    assert [m["body"]["content"] for m in await messages("p1")] == ["wecom first"]

    # Menu clicks only for keys of the installed menu; task_id is a WeCom card thing.
    assert (await post("click", userid=BOB, key="help", channel="wechat"))[0] == 400
    env.wechat.menu = {"button": [{"type": "click", "name": "帮助", "key": "help", "sub_button": []}]}
    assert await post("click", userid=BOB, key="help", channel="wechat") == (200, {"ok": True})
    await env.wechat.wait_for_bot_messages(BOB, 1)
    assert env.bot.seen[-1]["message"].key == "help"

    assert await post("follow", userid=STRANGER, channel="wechat") == (200, {"ok": True})
    await env.wechat.wait_for_bot_messages(STRANGER, 1)
    assert env.bot.seen[-1]["message"].event == "subscribe" and STRANGER in env.wechat.followers
    assert (await post("follow", userid=ALICE, channel="wechat"))[1] == {"ok": True, "already": True}

    # The same checks as for WeCom: JSON only, well-formed ids, known channels.
    assert (await post("send", userid="p1", text="hi", channel="wechat"))[0] == 400  # not an openid
    assert (await post("send", userid=ALICE + "\n", text="hi", channel="wechat"))[0] == 400
    assert (await post("send", userid=ALICE, text="hi", channel="qq"))[0] == 400
    assert (await post("click", userid="p1", key="help"))[0] == 400  # WeCom needs the card's task_id
    async with env.http.get(f"{env.url}/sandbox/api/messages", params={"userid": ALICE, "channel": "qq"}) as r:
        assert r.status == 400
    async with env.http.post(f"{env.url}/sandbox/api/send", data=f"userid={ALICE}&text=hi&channel=wechat",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 415


async def test_without_wechat_the_sandbox_is_wecom_only() -> None:
    wecom = WeComSimulator(corp_id="wwtest", agent_id=1, secret="s" * 20, token="t" * 10,
                           encoding_aes_key=aes_key(), callback_url="http://127.0.0.1:9/wecom/callback",
                           directory={"p1": "张伟"})
    runner = web.AppRunner(wecom.create_app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            async with http.get("/sandbox/api/members") as r:
                assert await r.json() == {"members": [{"userid": "p1", "name": "张伟", "channel": "wecom"}],
                                          "channels": ["wecom"]}
            async with http.get("/sandbox/api/menu") as r:
                assert await r.json() == {"button": []}
            async with http.post("/sandbox/api/send", json={"userid": ALICE, "text": "x", "channel": "wechat"}) as r:
                assert r.status == 400
            async with http.get("/mp/cgi-bin/token") as r:
                assert r.status == 404
    finally:
        await runner.cleanup()
    entry = wecom.record("p1", "bot", "text", {"content": "x"})
    assert isinstance(entry, ChatEntry) and entry.as_json()["channel"] == "wecom"
    assert Delivery("1").reply is None


# ----- the sandbox page in a browser ---------------------------------------------------------------
async def test_sandbox_page_chats_as_a_follower_with_the_menu() -> None:
    from playwright.async_api import expect

    from tests.test_sandbox_browser import chromium_page

    running, runners = await start_env("safe")
    try:
        def answer(message: Any) -> str:
            if message.type == "text" and message.content == "broken":
                return "<xml>not a reply</xml>"
            said = f"menu: {message.key}" if message.type == "event" else f"echo: {message.content}"
            return TextReply(message=message, content=said).render()

        running.bot.answer = answer
        running.wechat.menu = {"button": [
            {"type": "click", "name": "帮助", "key": "help", "sub_button": []},
            {"name": "任务", "sub_button": [{"type": "click", "name": "我的任务", "key": "tasks", "sub_button": []},
                                           {"type": "view", "name": "官网", "url": "https://brand.example/",
                                            "sub_button": []}]}]}
        media_id = "p" * 64
        running.wechat.media[media_id] = (png_bytes(), "image/png", time.time())
        running.wechat.record(ALICE, "bot", "image", {"media_id": media_id, "via": "custom"})
        running.wechat.record(ALICE, "bot", "news", {"via": "custom", "articles": [
            {"title": "<b>Spring</b>", "description": "d", "url": "https://brand.example/s", "picurl": ""}]})
        running.wecom.record("p1", "bot", "text", {"content": "wecom side"})

        async with chromium_page(10_000, viewport={"width": 1000, "height": 760}, locale="zh-CN") as opened:
            _, page, errors = opened
            await page.goto(running.url + "/")
            await expect(page.locator("#member option[value='p1']")).to_have_count(1)
            await page.locator("#channels button[data-channel='wechat']").click()
            await expect(page.locator("#member option")).to_have_count(2)
            await expect(page.locator(f"#member option[value='{ALICE}']")).to_have_text(f"Alice ({ALICE})")
            await page.select_option("#member", ALICE)

            # The follower's conversation: a custom image and a news link card (its HTML shown as text).
            await expect(page.locator(".msg.from-bot[data-msgtype='image'] img")).to_have_attribute(
                "src", f"/sandbox/media/{media_id}")
            news = page.locator(".msg.from-bot[data-msgtype='news']")
            await expect(news.locator(".card-title")).to_have_text("<b>Spring</b>")
            await expect(news.locator("a")).to_have_attribute("href", "https://brand.example/s")
            await expect(news).to_contain_text("客服消息")

            # WeChat shows the menu instead of the keyboard; ⌨ switches.
            await expect(page.locator("#wx-menu")).to_be_visible()
            await expect(page.locator("#composer")).to_be_hidden()
            await page.locator("#wx-menu .wx-kbd").click()
            await page.locator("#text").fill("hi")
            await page.locator("#text").press("Enter")
            reply = page.locator(".msg.from-bot").filter(has_text="echo: hi")
            await expect(reply).to_have_count(1)
            await expect(reply).to_contain_text("被动回复")

            await page.locator("#menu-toggle").click()
            await expect(page.locator("#wx-menu .wx-pop")).to_be_hidden()
            await page.locator("#wx-menu .wx-top.folder").click()
            await expect(page.locator("#wx-menu .wx-pop")).to_be_visible()
            await expect(page.locator("#wx-menu .wx-pop a")).to_have_attribute("href", "https://brand.example/")
            await page.locator("#wx-menu .wx-sub").filter(has_text="我的任务").click()
            await expect(page.locator(".msg.from-user").filter(has_text="我的任务")).to_have_count(1)
            await expect(page.locator(".msg.from-bot").filter(has_text="menu: tasks")).to_have_count(1)
            assert running.bot.seen[-1]["message"].key == "tasks"

            # A reply WeChat cannot use: the follower sees WeChat's service-failure notice.
            await page.locator("#wx-menu .wx-kbd").click()
            await page.locator("#text").fill("broken")
            await page.locator("#text").press("Enter")
            await expect(page.locator(".meta.failed")).to_contain_text("该公众号提供的服务出现故障")

            # Following with a new openid sends a subscribe event.
            await page.locator("#custom-userid").fill(STRANGER)
            await page.locator("#custom-add").click()
            await expect(page.locator("#member")).to_have_value(STRANGER)
            await expect(page.locator(".msg.from-user")).to_contain_text("关注了公众号")
            assert running.bot.seen[-1]["message"].event == "subscribe"

            # Back on WeCom: the members and their conversation, no menu.
            await page.locator("#channels button[data-channel='wecom']").click()
            await expect(page.locator("#member")).to_have_value("p1")
            await expect(page.locator(".msg.from-bot")).to_have_text(re.compile("wecom side"))
            await expect(page.locator("#wx-menu")).to_be_hidden()
            await expect(page.locator("#composer")).to_be_visible()
            await page.screenshot(path="/tmp/sandbox-wechat.png")
            assert errors == [], errors
    finally:
        await running.http.close()
        for runner in reversed(runners):
            await runner.cleanup()
    assert running.bot.problems == []
