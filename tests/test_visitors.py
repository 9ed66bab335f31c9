"""Unforgeable visitors: the `pb_vid` cookie is signed by the bot. An unsigned or tampered cookie is not
believed: the visitor is then one per (salted IP hash, user agent) and day, so a script inventing a
cookie for every click is one visitor; a cookie the bot signed stays one visitor from any address."""
import hashlib
import hmac

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import CLICKS, DB, VISITORS
from bot.config import ConfigError, load_config
from bot.web.links import VISITOR_COOKIE, ClientAddress, sign_visitor, visitor_secret
from store import fraud
from store.models import Click, Flag
from tests.conftest import Stack, make_config, visitor_cookie
from tests.test_links import BROWSER, link_code, stored_clicks, task_for_p1

A_DAY = 1_800_000_000.0  # the visitors' clock, pinned: no click of a test falls on either side of midnight


async def follow(stack: Stack, code: str, cookie: str | None, forwarded_for: str = "") -> str:
    """One tap on the link; the signed cookie the browser holds afterwards (the one the bot set, else
    the one it sent)."""
    return (await tap(stack, code, cookie, forwarded_for))[0]


async def tap(stack: Stack, code: str, cookie: str | None, forwarded_for: str = "") -> tuple[str, bool]:
    """(the browser's cookie afterwards, whether the bot set it)."""
    headers = {"User-Agent": BROWSER, **({"Cookie": cookie} if cookie else {}),
               **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(f"{stack.bot_url}/t/{code}", allow_redirects=False, headers=headers) as response:
            assert response.status == 302
            if VISITOR_COOKIE in response.cookies:
                return response.cookies[VISITOR_COOKIE].value, True
            assert cookie is not None, "a visitor without a cookie must get one"
            return cookie.partition("=")[2], False


@pytest.fixture
async def link(stack: Stack) -> str:
    await task_for_p1(stack)
    stack.bot[VISITORS].clock = lambda: A_DAY
    stack.bot[CLICKS].flood_window = 0  # keep every click: the fraud rules count them
    return await link_code(stack)


async def test_thirty_invented_cookies_from_one_device_are_one_visitor(stack: Stack, link: str) -> None:
    answered = {await follow(stack, link, f"{VISITOR_COOKIE}=invented{i:012d}") for i in range(30)}
    assert len(answered) == 1  # each answer re-signs the same visitor
    [signed] = answered
    visitor, day, signature = signed.split(".")
    assert int(day) == A_DAY // 86400 and len(signature) == 32
    assert signed == sign_visitor(visitor_secret(stack.config), visitor, int(day))

    clicks = await stored_clicks(stack)
    assert len(clicks) == 30 and {c.visitor_id for c in clicks} == {visitor}
    assert sum(c.is_unique for c in clicks) == 1
    assert "1 unique click(s)" in (await stack.ask("p1", "me"))[0]
    async with stack.bot[DB].session() as session:
        await fraud.scan(session, stack.config.fraud, stack.config.server.timezone)
    async with stack.bot[DB].session() as session:
        flags = [(f.rule, f.count) for f in await session.scalars(select(Flag))]
    assert flags == [("visitor_flood", 30)]  # one visitor clicking 30 times, not 30 people


async def test_a_tampered_or_unsigned_cookie_is_not_believed(stack: Stack, link: str) -> None:
    secret = visitor_secret(stack.config)
    honest = sign_visitor(secret, "v" * 20)
    signature = honest.rpartition(".")[2]
    await follow(stack, link, f"{VISITOR_COOKIE}={honest}")
    await follow(stack, link, f"{VISITOR_COOKIE}={'w' * 20}.{signature}")  # another id under v's signature
    await follow(stack, link, f"{VISITOR_COOKIE}={honest[:-1]}{'0' if honest[-1] != '0' else '1'}")
    await follow(stack, link, f"{VISITOR_COOKIE}={'u' * 20}")  # the old, unsigned form
    await follow(stack, link, f"{VISITOR_COOKIE}={sign_visitor(b'another secret', 'x' * 20)}")
    visitors = [c.visitor_id for c in await stored_clicks(stack)]
    assert visitors[0] == "v" * 20
    assert len(set(visitors[1:])) == 1 and visitors[1] not in {"v" * 20, "w" * 20, "u" * 20, "x" * 20}


async def test_a_signed_cookie_from_another_address_is_the_same_visitor(stack: Stack, link: str) -> None:
    stack.bot[VISITORS].addresses = ClientAddress("127.0.0.1")  # as behind a proxy: X-Forwarded-For counts
    cookie = await follow(stack, link, None, forwarded_for="203.0.113.5")  # at home
    await follow(stack, link, f"{VISITOR_COOKIE}={cookie}", forwarded_for="198.51.100.7")  # on the train
    await follow(stack, link, None, forwarded_for="198.51.100.7")  # someone else there, same phone model
    first, second, stranger = await stored_clicks(stack)
    assert first.visitor_id == second.visitor_id == cookie.partition(".")[0] != stranger.visitor_id
    assert first.ip_hash != second.ip_hash == stranger.ip_hash
    assert [c.is_unique for c in (first, second, stranger)] == [True, False, True]


async def test_a_current_cookie_is_not_signed_again_an_old_one_is(stack: Stack, link: str) -> None:
    secret, today = visitor_secret(stack.config), int(A_DAY // 86400)
    fresh = sign_visitor(secret, "f" * 20, today - 29)
    assert await tap(stack, link, f"{VISITOR_COOKIE}={fresh}") == (fresh, False)  # no Set-Cookie
    renewed, was_set = await tap(stack, link, f"{VISITOR_COOKIE}={sign_visitor(secret, 'o' * 20, today - 30)}")
    assert was_set and renewed == sign_visitor(secret, "o" * 20, today)
    # The form before the signing day: believed, and given the new form.
    old_form = f"{'p' * 20}.{hmac.new(secret, b'p' * 20, hashlib.sha256).hexdigest()[:32]}"
    renewed, was_set = await tap(stack, link, f"{VISITOR_COOKIE}={old_form}")
    assert was_set and renewed == sign_visitor(secret, "p" * 20, today)
    # A signing day changed by hand breaks the signature: not believed, a new visitor is signed.
    forged = f"{'f' * 20}.{today}.{fresh.rpartition('.')[2]}"
    renewed, was_set = await tap(stack, link, f"{VISITOR_COOKIE}={forged}", forwarded_for="")
    assert was_set and not renewed.startswith("f" * 20)
    visitors = [c.visitor_id for c in await stored_clicks(stack)]
    assert visitors[:3] == ["f" * 20, "o" * 20, "p" * 20] and visitors[3] not in visitors[:3]


async def test_the_tests_helper_signs_as_the_bot_does(stack: Stack) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    await follow(stack, code, visitor_cookie(stack.config, "z" * 24))
    assert [c.visitor_id for c in await stored_clicks(stack)] == ["z" * 24]


def test_the_secret_is_derived_from_the_wecom_app_when_not_set() -> None:
    config = make_config("sqlite+aiosqlite://")
    config.links.visitor_secret = ""
    derived = visitor_secret(config)
    assert derived == visitor_secret(config) and len(derived) == 32  # the same after a restart
    config.wecom.secret += "x"
    assert visitor_secret(config) != derived
    config.links.visitor_secret = "set"
    assert visitor_secret(config) == b"set"


@pytest.mark.parametrize("missing", ["PARTNERBOT_SERVER_IP_HASH_SALT", "PARTNERBOT_LINKS_VISITOR_SECRET"])
def test_with_redis_an_empty_salt_or_visitor_secret_is_a_config_error(missing: str) -> None:
    env = {"PARTNERBOT_REDIS_URL": "redis://127.0.0.1:6379/0", "PARTNERBOT_SERVER_IP_HASH_SALT": "salt",
           "PARTNERBOT_LINKS_VISITOR_SECRET": "secret"}
    assert load_config(environ=env).links.visitor_secret == "secret"
    with pytest.raises(ConfigError, match=r"must be set when \[redis\] url is"):
        load_config(environ={**env, missing: ""})
    assert load_config(environ={missing: ""}).redis.url == ""  # one instance: fine


def test_a_cookie_is_signed_with_hmac_sha256_so_cookies_signed_before_stay_valid() -> None:
    import hashlib
    import hmac
    from bot.web.links import sign_visitor
    for secret in (b"k", b"s" * 32, b"long" * 40):  # shorter than, as long as and longer than a block
        expected = hmac.new(secret, b"visitor0000000001.20000", hashlib.sha256).hexdigest()[:32]
        assert sign_visitor(secret, "visitor0000000001", 20000) == f"visitor0000000001.20000.{expected}"
