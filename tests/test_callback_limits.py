"""What an unsigned callback can make us do is bounded: odd query values get a 4xx (never a 500),
the body is read only up to CALLBACK_MAX_BYTES, and the signature is checked before any XML parsing.
(The time this saves is measured in bench/callback_flood.py, not here.)"""
import time
from urllib.parse import urlencode

import aiohttp
import pytest
import xmltodict

from bot.channels.envelope import CALLBACK_MAX_BYTES, CallbackRejected, ciphertext_of
from tests.conftest import Stack
from tests.test_wechat_channel import wx_stack  # noqa: F401 (a fixture)
from tests.wecom_vectors import sign

# 256 KB of tiny elements: the most expensive thing an XML parser can be handed per byte.
HEAVY = b"<xml>" + b"<a>1</a>" * ((256 * 1024 - 40) // 8) + b"<Encrypt>QUJD</Encrypt></xml>"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts XML parses in the bot (xmltodict is what wechatpy and parse_xml use)."""
    calls: list[int] = []
    real = xmltodict.parse

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(xmltodict, "parse", counting)
    return calls


async def status_of(stack: Stack, method: str, path: str, query: str, body: bytes = b"", **kw: object) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{stack.bot_url}{path}?{query}", data=body, **kw) as response:  # type: ignore[arg-type]
            return response.status


@pytest.mark.parametrize("stamp", ["¹", "١٢٣", "１７００000000"])
async def test_odd_timestamps_are_400_not_500(stack: Stack, stamp: str) -> None:
    # "¹".isdigit() is True but int("¹") fails; Arabic-Indic and full-width digits int() would take.
    query = urlencode({"msg_signature": "a" * 40, "timestamp": stamp, "nonce": "1", "echostr": "x"})
    assert await status_of(stack, "POST", "/wecom/callback", query, b"<xml><Encrypt>QUJD</Encrypt></xml>") == 400
    assert await status_of(stack, "GET", "/wecom/callback", query) == 400


async def test_odd_timestamps_are_400_on_wechat_too(wx_stack: Stack) -> None:  # noqa: F811
    query = urlencode({"signature": "a" * 40, "timestamp": "¹", "nonce": "1", "echostr": "x"})
    assert await status_of(wx_stack, "POST", "/wechat/callback", query, b"<xml></xml>") == 400
    assert await status_of(wx_stack, "GET", "/wechat/callback", query) == 400


def fresh_query(token: str = "not-the-token") -> str:
    now = str(int(time.time()))
    return urlencode({"msg_signature": sign(token, now, "1", "QUJD"), "timestamp": now, "nonce": "1"})


async def test_an_oversized_unsigned_callback_is_413_unread(stack: Stack, parses: list[int]) -> None:
    assert len(HEAVY) > CALLBACK_MAX_BYTES and len(HEAVY) <= stack.config.server.max_body_bytes
    assert await status_of(stack, "POST", "/wecom/callback", fresh_query(), HEAVY) == 413

    async def chunked():  # type: ignore[no-untyped-def]
        for start in range(0, len(HEAVY), 8192):
            yield HEAVY[start:start + 8192]

    # Without a Content-Length the read stops at the limit all the same.
    assert await status_of(stack, "POST", "/wecom/callback", fresh_query(), chunked()) == 413  # type: ignore[arg-type]
    assert parses == []


async def test_the_signature_is_checked_before_any_xml_is_parsed(stack: Stack, parses: list[int]) -> None:
    within = b"<xml>" + b"<a>1</a>" * ((CALLBACK_MAX_BYTES - 100) // 8) + b"<Encrypt>QUJD</Encrypt></xml>"
    assert await status_of(stack, "POST", "/wecom/callback", fresh_query(), within) == 403
    assert parses == []
    # A well-signed one is parsed (after decryption) and answered as usual.
    query, body = stack.sim.encrypt_callback(stack.sim.text_xml("p2", "help", "77", int(time.time())))
    assert await status_of(stack, "POST", "/wecom/callback", query, body) == 200
    assert parses


async def test_wechat_unsigned_callbacks_are_bounded_the_same_way(wx_stack: Stack, parses: list[int]) -> None:  # noqa: F811
    wechat = wx_stack.wechat
    assert wechat is not None
    query, _ = wechat.encrypt_callback(wechat.text_xml("oWxFollower000000000stranger", "help", "5", int(time.time())))
    parses.clear()  # the simulator parsed its own envelope
    assert await status_of(wx_stack, "POST", "/wechat/callback", query, HEAVY) == 413
    within = b"<xml>" + b"<a>1</a>" * ((CALLBACK_MAX_BYTES - 100) // 8) + b"<Encrypt>QUJD</Encrypt></xml>"
    assert await status_of(wx_stack, "POST", "/wechat/callback", query, within) == 403  # msg_signature is not for it
    assert parses == []


@pytest.mark.parametrize("body, expected", [
    (b"<xml><ToUserName><![CDATA[c]]></ToUserName><Encrypt><![CDATA[QUJD+/=]]></Encrypt><AgentID>1</AgentID></xml>",
     "QUJD+/="),
    (b'<?xml version="1.0"?>\n<xml>\n<Encrypt>QUJD</Encrypt>\n</xml>\n', "QUJD"),
    # Compatible mode: a plaintext copy first (its Content may say anything), the ciphertext last.
    (b"<xml><Content><![CDATA[<Encrypt>Zm9v</Encrypt>]]></Content><Encrypt><![CDATA[QUJD]]></Encrypt></xml>", "QUJD"),
])
def test_the_ciphertext_is_found_without_a_parser(body: bytes, expected: str) -> None:
    assert ciphertext_of(body) == expected


@pytest.mark.parametrize("body", [b"", b"<xml><Encrypt>a b</Encrypt></xml>", b"<other><Encrypt>QUJD</Encrypt></other>",
                                  b"<!DOCTYPE xml><xml><Encrypt>QUJD</Encrypt></xml>"])
def test_envelopes_without_a_clean_ciphertext_are_400(body: bytes) -> None:
    with pytest.raises(CallbackRejected) as err:
        ciphertext_of(body)
    assert err.value.status == 400



async def test_the_simulator_takes_odd_numbers_too(stack: Stack) -> None:
    """The sandbox's `after=` and user/list's department_id: "¹" passed isdigit() and broke int()."""
    async with aiohttp.ClientSession(base_url=stack.sim_url) as http:
        async with http.get("/sandbox/api/messages", params={"userid": "p2", "after": "¹"}) as r:
            assert r.status == 200
        async with http.get("/cgi-bin/gettoken", params={"corpid": stack.sim.corp_id,
                                                         "corpsecret": stack.config.wecom.secret}) as r:
            token = (await r.json())["access_token"]
        async with http.get("/cgi-bin/user/list", params={"access_token": token, "department_id": "¹"}) as r:
            assert r.status == 200 and (await r.json())["errcode"] == 60123
