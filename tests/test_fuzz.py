"""Hostile input over real HTTP (hypothesis): the callback, redirect, landing form and admin API
answer every malformed request with a 4xx (or the friendly page) — never a 500 — and store nothing
half-made."""
import re

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.app import DB
from store.models import Click, InboxMessage, Lead, Task
from tests.conftest import FOLLOWERS, Stack, admin_http
from tests.test_wechat_channel import wx_stack  # noqa: F401 (a fixture)

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXT = st.text(max_size=300)
QUERY = st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]), TEXT, max_size=4)
XMLISH = st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda inner: f"<xml><ToUserName>x</ToUserName><Encrypt>{inner}</Encrypt></xml>".encode(), TEXT),
    st.just(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>'),
)


async def counts(stack: Stack) -> tuple[int, int, int, int]:
    async with stack.bot[DB].session() as session:
        return tuple([await session.scalar(select(func.count()).select_from(model))  # type: ignore[return-value]
                      for model in (InboxMessage, Click, Lead, Task)])


@FUZZ
@given(query=QUERY, body=XMLISH, method=st.sampled_from(["GET", "POST"]))
async def test_callback_never_fails_on_garbage(stack: Stack, query: dict, body: bytes, method: str) -> None:
    await garbage_is_refused(stack, "/wecom/callback", query, body, method)


async def garbage_is_refused(stack: Stack, path: str, query: dict, body: bytes, method: str) -> None:
    before = await counts(stack)
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.request(method, path, params=query, data=body) as r:
            assert r.status in (200, 400, 403, 405, 413), (r.status, await r.text())
    assert await counts(stack) == before  # nothing without a valid signature is stored


WECHAT_QUERY = st.dictionaries(st.sampled_from(["signature", "timestamp", "nonce", "echostr", "openid", "encrypt_type",
                                               "msg_signature"]), TEXT, max_size=6)


@FUZZ
@given(query=WECHAT_QUERY, body=XMLISH, method=st.sampled_from(["GET", "POST"]))
async def test_wechat_callback_never_fails_on_garbage(wx_stack: Stack, query: dict, body: bytes, method: str) -> None:
    await garbage_is_refused(wx_stack, "/wechat/callback", query, body, method)


ELEMENT = st.sampled_from(["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event",
                           "EventKey", "MediaId"])


@FUZZ
@given(fields=st.dictionaries(ELEMENT, st.one_of(TEXT, st.sampled_from(["text", "event", "CLICK", "subscribe",
                                                                      "image", *FOLLOWERS])), max_size=7))
async def test_wechat_signed_messages_with_odd_content_never_fail(wx_stack: Stack, fields: dict) -> None:
    """Validly signed and encrypted (so it gets past the envelope) but odd inside."""
    assert wx_stack.wechat is not None
    inner = "".join(f"<{k}><![CDATA[{v.replace(']]>', '')}]]></{k}>" for k, v in fields.items())
    query, body = wx_stack.wechat.encrypt_callback(f"<xml>{inner}</xml>")
    async with aiohttp.ClientSession(base_url=wx_stack.bot_url) as http:
        async with http.post(f"/wechat/callback?{query}", data=body) as r:
            assert r.status in (200, 400), (r.status, await r.text())


@FUZZ
@given(path=st.text(min_size=1, max_size=200), method=st.sampled_from(["GET", "HEAD"]),
       agent=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=600), cookie=st.text(max_size=80))
async def test_redirect_paths_never_fail(stack: Stack, path: str, method: str, agent: str, cookie: str) -> None:
    # Deliberately unsigned (forged) visitor cookies: they are ignored, never an error.
    headers = {"User-Agent": agent, "Cookie": f"pb_vid={re.sub(r'[^A-Za-z0-9.]', '', cookie)}"}
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.request(method, "/t/" + aiohttp.helpers.quote(path, safe=""), allow_redirects=False,
                                headers=headers) as r:
            assert r.status in (404, 410), r.status  # no code exists: the friendly page, never a redirect
            assert "location" not in r.headers


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["name", "company", "phone", "region", "industry", "consent",
                                               "csrf", "x"]), TEXT, max_size=8))
async def test_landing_form_posts_never_fail_or_store_bad_leads(stack: Stack, fields: dict) -> None:
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.post("/l/nosuchcode", data=fields) as r:
            assert r.status in (400, 403, 404, 410, 422, 429), r.status
    assert (await counts(stack))[2] == 0


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                       lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
                       max_leaves=12)


@FUZZ
@given(path=st.sampled_from(["/api/tasks", "/api/leads", "/api/partners", "/api/assignment-rules",
                             "/api/pools/public/rules", "/api/tasks/1", "/api/leads/1/assign",
                             "/api/members/p2/binding-code"]),
       body=st.one_of(JSONISH, st.dictionaries(st.sampled_from(["title", "url", "name", "phone", "pool", "tier",
                                                                "max_held", "deadline", "cost", "partner"]),
                                               JSONISH, max_size=5)),
       method=st.sampled_from(["POST", "PATCH"]))
async def test_admin_api_never_fails_on_odd_json(api_stack: Stack, path: str, body: object, method: str) -> None:
    async with admin_http(api_stack) as http:
        async with http.request(method, path, json=body) as r:
            assert r.status < 500, (r.status, await r.text())
