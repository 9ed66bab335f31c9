"""The WeChat Official Account channel: callbacks (wechatpy's Official Account crypto), passive replies,
and customer-service messages.

Inbound: GET /wechat/callback answers URL verification; POST checks `signature` and the timestamp,
decrypts when the account is in safe or compatible mode (`encrypt_type=aes`, `msg_signature`),
parses, and stores one Incoming in the inbox before answering. If the first reply is ready within
[wechat] passive_reply_seconds it goes back in the HTTP answer (a passive reply, which works even for
accounts without the customer-service API); everything else goes out through message/custom/send,
which WeChat accepts only within 48 hours of the follower's last message.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import ImageReply, TextReply
from wechatpy.utils import WeChatSigner

from bot.channels.base import Pipeline, SendingKit
from bot.channels.passive import (Answered, PictureMedia, Receive, Submit, picture_media, receiver, respond, submitter,
                                  xml_text)
from bot.channels.media import MediaSender
from bot.channels.wechat_api import WeChatClient
from bot.channels.envelope import (CALLBACK_MAX_BYTES, CallbackRejected, ascii_int, check_timestamp, ciphertext_of,
                                   read_body, refuse_oversized, url_verification)
from bot.channels.wecom import Received, fit, parse_xml
from bot.config import Config, WeChatConfig
from bot.metrics import CALLBACKS
from handlers.replies import Card, Incoming, News, Reply, is_picture, reply_from_payload
from store import bindings
from store import outbox as outbox_store

log = logging.getLogger(__name__)

CHANNEL = "wechat"
_MEDIA_TYPES = {"image", "voice", "video", "shortvideo", "location", "link", "file"}
OPENID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Envelope:
    plaintext: str
    encrypted: bool  # the answer must be encrypted too
    nonce: str


class WeChatCodec:
    def __init__(self, config: WeChatConfig) -> None:
        self.config = config
        self.crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.app_id) \
            if config.encoding_aes_key else None

    def check_query(self, query: Any, now: float | None = None) -> tuple[str, str]:
        """Before the body is read: parameters, timestamp window and `signature` (which covers the
        timestamp and nonce only, never the body)."""
        signature, timestamp, nonce = (query.get(name, "") for name in ("signature", "timestamp", "nonce"))
        if not signature or not timestamp or not nonce:
            raise CallbackRejected(400, "missing signature, timestamp or nonce")
        check_timestamp(timestamp, self.config.max_clock_skew_seconds, now)
        signer = WeChatSigner()
        signer.add_data(self.config.token, timestamp, nonce)
        if not hmac.compare_digest(signer.signature.encode(), signature.encode()):
            raise CallbackRejected(403, "bad signature")
        return timestamp, nonce

    def verify_url(self, query: Any, now: float | None = None) -> str:
        self.check_query(query, now)
        echo = query.get("echostr", "")
        if not echo:
            raise CallbackRejected(400, "missing echostr")
        return str(echo)

    def open(self, query: Any, body: bytes, now: float | None = None,
             checked: tuple[str, str] | None = None) -> Envelope:
        """`checked`: what check_query returned for this query (so it is not checked twice)."""
        timestamp, nonce = checked or self.check_query(query, now)
        if query.get("encrypt_type", "raw") != "aes":
            # In plaintext mode `signature` covers only the timestamp and nonce, not the body: an
            # account that has an AES key takes nothing it did not encrypt.
            if self.crypto is not None:
                raise CallbackRejected(403, "plaintext callback, but this account is in safe mode")
            return Envelope(body.decode("utf-8"), False, nonce)
        if self.crypto is None:
            raise CallbackRejected(400, "encrypted callback, but [wechat] encoding_aes_key is not set")
        msg_signature = query.get("msg_signature", "")
        if not msg_signature:
            raise CallbackRejected(400, "missing msg_signature")
        encrypted = ciphertext_of(body)
        try:  # msg_signature (which covers the ciphertext) is checked before anything is decrypted
            plaintext = self.crypto.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise CallbackRejected(403, "bad msg_signature") from None
        except Exception as err:  # corrupt base64, padding or app id
            raise CallbackRejected(400, f"undecryptable message ({type(err).__name__})") from None
        return Envelope(str(plaintext), True, nonce)

    def seal(self, reply_xml: str, envelope: Envelope) -> str:
        if not envelope.encrypted or self.crypto is None:
            return reply_xml
        return str(self.crypto.encrypt_message(reply_xml, secrets.token_hex(8), str(int(time.time()))))


@dataclass(frozen=True)
class WeChatReceived(Received):
    account: str = ""  # the Official Account's original id (ToUserName): the sender of a passive reply


def read_message(plaintext: str) -> WeChatReceived:
    raw = parse_xml(plaintext)
    openid, account = raw.get("FromUserName"), raw.get("ToUserName")
    msg_type = str(raw.get("MsgType") or "").lower()
    if not isinstance(openid, str) or not OPENID_PATTERN.match(openid) or not isinstance(account, str) or not msg_type:
        raise CallbackRejected(400, "message without a valid FromUserName, ToUserName or MsgType")
    create_time = ascii_int(raw.get("CreateTime")) or 0
    event = str(raw.get("Event") or "").lower()
    if msg_type == "event":
        # Events have no MsgId: WeChat's own advice is sender + CreateTime (+ what the event is).
        key = f"event:{openid}:{create_time}:{event}:{str(raw.get('EventKey') or '')[:100]}"
    else:
        msg_id = str(raw.get("MsgId") or "")
        key = f"msg:{msg_id}" if msg_id else f"msg:{openid}:{create_time}:{msg_type}"
    message: Incoming | None = None
    if msg_type == "text":
        message = Incoming(CHANNEL, openid, "text", text=str(raw.get("Content") or ""), create_time=create_time)
    elif msg_type == "event" and event == "click":
        # A menu button: its key is the command line it runs, like a WeCom card button.
        message = Incoming(CHANNEL, openid, "card_event", event_key=str(raw.get("EventKey") or ""),
                           create_time=create_time)
    elif msg_type == "event" and event == "subscribe":
        # A new follower gets the greeting an empty message gets: bound members a hint, others how to bind.
        message = Incoming(CHANNEL, openid, "text", text="", create_time=create_time)
    elif msg_type in _MEDIA_TYPES:
        message = Incoming(CHANNEL, openid, "unsupported", create_time=create_time)
    return WeChatReceived(f"{CHANNEL}:{key}"[:255], message, account)


def as_text(reply: Reply) -> str | None:
    """The reply as WeChat text, if it is text at heart (a card with buttons lists their commands)."""
    if reply.kind in ("text", "markdown"):
        return fit(reply.content)
    if isinstance(reply, News):
        return fit("\n".join(line for line in (reply.title, reply.description, reply.url) if line))
    if isinstance(reply, Card):
        lines = [reply.title, reply.description, reply.url]
        lines += [f"• {b.text}：{b.command}" for b in reply.buttons]
        return fit("\n".join(line for line in lines if line))
    return None


def pick_passive(payloads: list[dict[str, Any]]) -> int | None:
    """The first reply, if it is text at heart or a picture (uploaded first, if there is time)."""
    if not payloads:
        return None
    return 0 if is_picture(payloads[0]) or as_text(reply_from_payload(payloads[0])) is not None else None


def callback_routes(codec: WeChatCodec, receive: Receive, submit: Submit, config: WeChatConfig,
                    max_body_bytes: int, pictures: PictureMedia) -> list[web.RouteDef]:
    """`receive(key, message, deadline)` stores the message (False: a retry) and, when its replies are
    queued before `deadline` (time.monotonic()), returns them (`Answered`)."""

    verify = url_verification(codec, CHANNEL)

    limit = min(max_body_bytes, CALLBACK_MAX_BYTES)

    async def callback(request: web.Request) -> web.StreamResponse:
        # WeChat waits 5 s for the answer, counted from its request: so is our passive-reply budget.
        deadline = time.monotonic() + config.passive_reply_seconds
        try:
            # Cheapest first: the query and its signature, then a bounded read, then real work.
            refuse_oversized(request, limit)
            checked = codec.check_query(request.query)
            envelope = codec.open(request.query, await read_body(request, limit), checked=checked)
            received = read_message(envelope.plaintext)
        except CallbackRejected as err:
            log.warning("wechat callback refused: %s", err.reason)
            CALLBACKS.labels("rejected").inc()
            return web.Response(status=err.status, text=err.reason)
        except UnicodeDecodeError:
            CALLBACKS.labels("rejected").inc()
            return web.Response(status=400, text="not UTF-8")
        if received.message is None:
            return web.Response(text="success")
        try:
            stored, answered = await receive(received.dedupe_key, received.message, deadline)
        except Exception as err:
            log.error("wechat callback not stored (%s); answering 503", type(err).__name__)
            CALLBACKS.labels("failed").inc()
            return web.Response(status=503, text="try again")
        CALLBACKS.labels("accepted" if stored else "duplicate").inc()

        async def render(claim: outbox_store.Claim) -> str:
            user_id = received.message.user_id
            if is_picture(claim.payload):
                reply: Any = ImageReply(source=received.account, target=user_id, media_id=await pictures(claim))
            else:
                content = as_text(reply_from_payload(claim.payload))
                assert content is not None  # pick_passive chose it for being text
                reply = TextReply(source=received.account, target=user_id, content=xml_text(content))
            return codec.seal(reply.render(), envelope)

        # "success": received, the answer comes later.
        return await respond(request, CHANNEL, answered, deadline, submit, render, "success")

    return [web.get("/wechat/callback", verify), web.post("/wechat/callback", callback)]


class WeChatSender(MediaSender):
    """Sends one outbox payload to one follower as a customer-service message."""

    channel = CHANNEL
    client: WeChatClient

    async def send(self, recipient: str, payload: dict[str, Any], *, message_id: int, duplicate_check: bool,
                   duplicate_window: int) -> None:
        # WeChat has no duplicate check: a resend after a crash between sending and marking shows twice.
        await self.client.send_custom({"touser": recipient, **await self.body_of(payload, message_id)})

    async def _body(self, reply: Reply, message_id: int) -> dict[str, Any]:
        if isinstance(reply, Card) and reply.buttons:
            # A message menu: tapping an item sends its text back, i.e. runs the button's command.
            return {"msgtype": "msgmenu", "msgmenu": {
                "head_content": fit(f"{reply.title}\n{reply.menu_description or reply.description}".strip()),
                "list": [{"id": str(i), "content": b.command} for i, b in enumerate(reply.buttons[:10], 1)],
                "tail_content": reply.url}}
        if isinstance(reply, (Card, News)) and reply.url:
            article = {"title": reply.title[:64], "description": reply.description[:120], "url": reply.url}
            if isinstance(reply, News) and reply.picurl:
                article["picurl"] = reply.picurl
            return {"msgtype": "news", "news": {"articles": [article]}}
        return {"msgtype": "text", "text": {"content": as_text(reply) or ""}}


class WeChatChannel:
    """The brand's WeChat Official Account, for partner staff outside WeCom (on when [wechat] app_id is set)."""

    name = CHANNEL

    def enabled(self, config: Config) -> bool:
        return config.wechat.enabled

    def send_limits(self, config: Config) -> None:
        return None  # WeChat's limit is its 48-hour window, which the sender reports per message

    def routes(self, config: Config, pipeline: Pipeline) -> list[web.RouteDef]:
        background: set[asyncio.Task[None]] = set()

        async def release_parked(openid: str) -> None:
            """The follower wrote, so WeChat takes customer-service messages again: what waited is due."""
            try:
                async with pipeline.db().session() as session:
                    recipients = await bindings.recipients_of(session, CHANNEL, openid)
                    if await outbox_store.release_waiting(session, recipients, waiting_days=config.wechat.waiting_days):
                        pipeline.outbox().kick()
            except Exception as err:  # they are released the next time the follower writes
                log.warning("wechat: cannot release waiting messages now (%s)", type(err).__name__)

        wait_for_replies = receiver(CHANNEL, pipeline, config.wechat, pick_passive)

        async def receive(dedupe_key: str, message: Incoming,
                          deadline: float) -> tuple[bool, Answered | None]:
            # Beside the callback, not in its way: the passive reply has a deadline.
            task = asyncio.create_task(release_parked(message.user_id))
            background.add(task)
            task.add_done_callback(background.discard)
            return await wait_for_replies(dedupe_key, message, deadline)

        return callback_routes(WeChatCodec(config.wechat), receive, submitter(CHANNEL, pipeline), config.wechat,
                               config.server.max_body_bytes, picture_media(CHANNEL, pipeline))

    def sender(self, config: Config, kit: SendingKit) -> WeChatSender:
        return WeChatSender(WeChatClient(config.wechat, kit.http, kit.shared), kit.posters, kit.shared, kit.sources)
