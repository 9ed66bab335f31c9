"""`partnerbot check`'s callback part: the Token and EncodingAESKey as the consoles take them, then the
URL verification a platform makes when an admin presses save in its console (a GET with a signed
echostr), answered by our own verification handler started on a loopback port, and by
`[server] public_base_url` when something answers there."""
from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from wechatpy.utils import WeChatSigner

from bot.channels.envelope import url_verification
from bot.channels.wechat import WeChatCodec
from bot.channels.wecom import WeComCodec
from bot.config import Config, WeChatConfig, WeComConfig
from bot.config_checks import _is_aes_key
from handlers.doctor import CALLBACK_PLACES, FAIL, HOW_VERIFIED, OK, WARN

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9]{1,32}$")
# How long each platform waits for the answer to its URL verification.
VERIFY_LIMIT_MS = {"wecom": 1000, "wechat": 5000}


class CallbackChecks:
    config: Config
    http: aiohttp.ClientSession

    def note(self, status: str, topic: str, text: str, /, **facts: Any) -> None:
        raise NotImplementedError

    async def check_callback(self, section: str) -> None:
        """Token and EncodingAESKey as the console takes them, then URL verification as the platform does it."""
        settings: WeComConfig | WeChatConfig = getattr(self.config, section)
        platform, where, id_name = CALLBACK_PLACES[section]
        topic, env = f"{'wecom' if section == 'wecom' else 'oa'} callback", f"PARTNERBOT_{section.upper()}_"
        ready = True
        if not settings.token:
            self.note(FAIL, topic, "callback.token.missing", section=section, env=env + "TOKEN", where=where)
            ready = False
        elif not TOKEN_PATTERN.fullmatch(settings.token):
            self.note(WARN, topic, "callback.token.format", section=section, length=len(settings.token),
                      env=env + "TOKEN")
        key = settings.encoding_aes_key
        if not key and section == "wecom":
            self.note(FAIL, topic, "callback.key.missing", section=section, env=env + "ENCODING_AES_KEY", where=where)
            ready = False
        elif key and (len(key) != 43 or not _is_aes_key(key)):
            self.note(FAIL, topic, "callback.key.format", section=section, length=len(key),
                      env=env + "ENCODING_AES_KEY", where=where)
            ready = False
        if not ready or (section == "wecom" and not settings.corp_id):
            return
        path = f"/{section}/callback"
        public = self.config.server.public_base_url.rstrip("/") + path
        verify = url_verification(WeComCodec(settings) if isinstance(settings, WeComConfig) else WeChatCodec(settings),
                                  section)
        query, echo = verification_query(settings)
        status, body, ms = await _serve_once(verify, path, lambda url: self._get(url, query))
        if status == 200 and body == echo:
            self.note(OK, topic, "callback.local.ok", platform=platform, ms=ms,
                      how=HOW_VERIFIED[section].format(url=public))
        else:
            self.note(FAIL, topic, "callback.local.fail", platform=platform, status=status, body=body[:80],
                      id_name=id_name)
            return
        query, echo = verification_query(settings)
        try:
            status, body, ms = await self._get(public, query)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            self.note(WARN, topic, "callback.public.down", url=public, platform=platform,
                      error=type(err).__name__)
            return
        if status != 200 or body != echo:
            self.note(FAIL, topic, "callback.public.wrong", url=public, platform=platform, status=status,
                      body=body[:80], id_name=id_name, path=path)
        elif ms > VERIFY_LIMIT_MS[section]:
            self.note(WARN, topic, "callback.public.slow", url=public, platform=platform, ms=ms,
                      limit_ms=VERIFY_LIMIT_MS[section])
        else:
            self.note(OK, topic, "callback.public.ok", url=public, platform=platform, ms=ms)

    async def _get(self, url: str, query: dict[str, str]) -> tuple[int, str, int]:
        started = time.monotonic()
        async with self.http.get(url, params=query, timeout=aiohttp.ClientTimeout(total=6)) as response:
            body = await response.text()
            return response.status, body, round((time.monotonic() - started) * 1000)



def verification_query(settings: WeComConfig | WeChatConfig) -> tuple[dict[str, str], str]:
    """The query a platform sends to verify a callback URL, and the answer it expects."""
    timestamp, nonce, echo = str(int(time.time())), str(secrets.randbelow(10**10)), secrets.token_hex(12)
    if isinstance(settings, WeComConfig):
        # WeCom encrypts the echostr (wechatpy, like every message) and signs the ciphertext.
        sealed = WeComCodec(settings).crypto.encrypt_message(echo, nonce, timestamp)
        encrypted = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]>", sealed).group(1)  # type: ignore[union-attr]
        signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", sealed).group(1)  # type: ignore[union-attr]
        return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce, "echostr": encrypted}, echo
    signer = WeChatSigner()
    signer.add_data(settings.token, timestamp, nonce)
    return {"signature": signer.signature, "timestamp": timestamp, "nonce": nonce, "echostr": echo}, echo


async def _serve_once(handler: Callable[[web.Request], Awaitable[web.StreamResponse]], path: str,
                      ask: Callable[[str], Awaitable[tuple[int, str, int]]]) -> tuple[int, str, int]:
    """Run `handler` at `path` on a loopback port just long enough for `ask(url)`."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return await ask(f"http://127.0.0.1:{port}{path}")
    finally:
        await runner.cleanup()
