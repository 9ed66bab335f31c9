"""The WeCom channel: callback verification, decryption and parsing (wechatpy), and replies.

Inbound: GET /wecom/callback answers URL verification; POST checks the timestamp and the body
size, verifies msg_signature (bot/channels/envelope.py: before any parsing), decrypts, parses, and
hands one Incoming to the inbox, which stores it before we answer 200. If the first reply is ready
within [wecom] passive_reply_seconds it goes back in that answer (a passive reply, bot/channels/passive.py;
for a card button click, the button's new label as update_button). Outbound: Reply payloads become
message/send bodies (a button label: message/update_template_card with the click's response code).
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import xmltodict
from aiohttp import web
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.replies import ArticlesReply, ImageReply, TextReply
from wechatpy.exceptions import InvalidSignatureException

from bot.channels.base import Pipeline, SendingKit, SendLimits
from bot.channels.passive import PictureMedia, Receive, Submit, picture_media, receiver, respond, submitter, xml_text
from bot.channels.envelope import (CALLBACK_MAX_BYTES, CallbackRejected, ascii_int, check_timestamp, ciphertext_of,
                                   read_body, refuse_oversized, url_verification)
from bot.channels.wecom_api import WeComClient
from bot.config import Config, WeComConfig
from bot.metrics import CALLBACKS
from bot.channels.media import MediaSender
from handlers.replies import ButtonLabel, Incoming, News, Reply, Text, is_picture, reply_from_payload
from store import outbox as outbox_store

log = logging.getLogger(__name__)

CHANNEL = "wecom"
# message/send rejects text and markdown content over 2,048 bytes, a news article's title over 128 and
# its description over 512.
MAX_CONTENT_BYTES = 2048
NEWS_TITLE_BYTES, NEWS_DESCRIPTION_BYTES = 128, 512
MAX_LABEL_CHARS = 10  # a template card button's text
_MEDIA_TYPES = {"image", "voice", "video", "file", "location", "link"}
# Event fields that tell two events of one second apart (DESIGN §10).
_EVENT_KEY_FIELDS = ("Event", "EventKey", "TaskId", "ResponseCode", "ChangeType", "CardType")


@dataclass(frozen=True)
class Received:
    dedupe_key: str
    message: Incoming | None  # None: valid but nothing to act on (e.g. enter_agent)


class WeComCodec:
    """Signature, replay window and AES via wechatpy; everything else about the envelope."""

    def __init__(self, config: WeComConfig) -> None:
        self.config = config
        self.crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.corp_id)

    def check_query(self, query: Any, *names: str, now: float | None = None) -> list[str]:
        """Before the body is read: the parameters are there and the timestamp is recent."""
        names = names or ("msg_signature", "timestamp", "nonce")
        values = [query.get(name, "") for name in names]
        if not all(values):
            raise CallbackRejected(400, f"missing {', '.join(n for n, v in zip(names, values) if not v)}")
        check_timestamp(query.get("timestamp", ""), self.config.max_clock_skew_seconds, now)
        return values

    def verify_url(self, query: Any, now: float | None = None) -> str:
        signature, timestamp, nonce, echostr = self.check_query(
            query, "msg_signature", "timestamp", "nonce", "echostr", now=now)
        try:
            return str(self.crypto.check_signature(signature, timestamp, nonce, echostr))
        except InvalidSignatureException:
            raise CallbackRejected(403, "bad signature") from None
        except Exception as err:  # corrupt echostr: base64, padding or receive id
            raise CallbackRejected(400, f"undecryptable echostr ({type(err).__name__})") from None

    def decrypt(self, query: Any, body: bytes, now: float | None = None, checked: list[str] | None = None) -> str:
        """`checked`: what check_query returned for this query (so it is not checked twice)."""
        signature, timestamp, nonce = checked or self.check_query(query, now=now)
        encrypted = ciphertext_of(body)
        try:  # wechatpy checks msg_signature before it decrypts; only then is anything parsed
            return str(self.crypto.decrypt_message({"Encrypt": encrypted}, signature, timestamp, nonce))
        except InvalidSignatureException:
            raise CallbackRejected(403, "bad signature") from None
        except Exception as err:
            raise CallbackRejected(400, f"undecryptable message ({type(err).__name__})") from None

    def seal(self, reply_xml: str) -> str:
        """A passive reply, encrypted and signed like a callback (WeCom takes nothing in plaintext)."""
        return str(self.crypto.encrypt_message(reply_xml, secrets.token_hex(8), str(int(time.time()))))


def parse_xml(data: bytes | str) -> dict[str, Any]:
    """Parse a WeCom XML document; no DTDs or entities, ever (they are how XML bombs work)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise CallbackRejected(400, "XML with a DTD")
    try:
        root = xmltodict.parse(text, disable_entities=True)
    except Exception as err:  # ExpatError and friends: malformed input
        raise CallbackRejected(400, f"malformed XML ({type(err).__name__})") from None
    xml = root.get("xml") if isinstance(root, dict) else None
    if not isinstance(xml, dict):
        raise CallbackRejected(400, "no <xml> root element")
    return xml


def read_message(plaintext: str) -> Received:
    """Decrypted callback XML → de-duplication key and the normalized message."""
    raw = parse_xml(plaintext)
    user_id = raw.get("FromUserName")
    msg_type = str(raw.get("MsgType") or "").lower()
    if not isinstance(user_id, str) or not user_id or not msg_type:
        raise CallbackRejected(400, "message without FromUserName or MsgType")
    create_time = ascii_int(raw.get("CreateTime")) or 0
    if msg_type == "event":
        key = ":".join(["event", user_id, str(create_time)] + [str(raw.get(f) or "") for f in _EVENT_KEY_FIELDS])
    else:
        msg_id = str(raw.get("MsgId") or "")
        key = f"msg:{msg_id}" if msg_id else f"msg:{user_id}:{create_time}:{msg_type}"
    dedupe_key = f"{CHANNEL}:{key}"[:255]

    # The fields are read from the one parse above (wechatpy's parse_message would parse it again, and
    # has no class for template_card_event anyway).
    if msg_type == "text":
        message = Incoming(CHANNEL, user_id, "text", text=str(raw.get("Content") or ""), create_time=create_time)
    elif msg_type == "event" and str(raw.get("Event") or "").lower() == "template_card_event":
        message = Incoming(CHANNEL, user_id, "card_event", event_key=str(raw.get("EventKey") or ""),
                           card_task_id=str(raw.get("TaskId") or ""),
                           response_code=str(raw.get("ResponseCode") or ""), create_time=create_time)
    elif msg_type in ("image", "file") and str(raw.get("MediaId") or ""):
        # A picture or file sent to the app: its media id lets the bot fetch it (media/get) for 3 days.
        message = Incoming(CHANNEL, user_id, "media", media_id=str(raw["MediaId"]), media_type=msg_type,
                           filename=str(raw.get("FileName") or "") if msg_type == "file" else "",
                           create_time=create_time)
    elif msg_type in _MEDIA_TYPES:
        message = Incoming(CHANNEL, user_id, "unsupported", create_time=create_time)
    else:
        message = None
    return Received(dedupe_key, message)


def pick_passive(payloads: list[dict[str, Any]]) -> int | None:
    """Which reply WeCom can take in the callback's answer: a card button's new label (update_button,
    only ever queued for a card tap) wherever it is among the replies, else the first reply if it is
    text, news or a picture (uploaded first, if there is time). Markdown and cards go as messages."""
    kinds = [p.get("kind") for p in payloads]
    if "button_label" in kinds:
        return kinds.index("button_label")
    return 0 if kinds and (kinds[0] in ("text", "news") or is_picture(payloads[0])) else None


def passive_xml(claim: outbox_store.Claim, corp_id: str, agent_id: int, media_id: str | None = None) -> str:
    """A reply `pick_passive` chose, as WeCom's plaintext passive-reply XML (a picture by its uploaded `media_id`)."""
    reply = reply_from_payload(claim.payload)
    user_id = claim.recipient
    if isinstance(reply, ButtonLabel):
        # WeCom's "更新点击用户的按钮文案": the tapping member's card shows its buttons as this, greyed out.
        return (f"<xml><ToUserName><![CDATA[{xml_text(user_id)}]]></ToUserName>"
                f"<FromUserName><![CDATA[{xml_text(corp_id)}]]></FromUserName>"
                f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[update_button]]></MsgType>"
                f"<Button><ReplaceName><![CDATA[{xml_text(reply.label[:MAX_LABEL_CHARS])}]]></ReplaceName></Button></xml>")
    if isinstance(reply, Text):
        return str(TextReply(source=corp_id, target=user_id, agent=agent_id, content=xml_text(fit(reply.content))).render())
    if isinstance(reply, News):
        article = {"title": xml_text(fit(reply.title, NEWS_TITLE_BYTES)),
                   "description": xml_text(fit(reply.description, NEWS_DESCRIPTION_BYTES)),
                   "image": xml_text(reply.picurl), "url": xml_text(reply.url)}
        return str(ArticlesReply(source=corp_id, target=user_id, agent=agent_id, articles=[article]).render())
    if media_id is not None:
        return str(ImageReply(source=corp_id, target=user_id, agent=agent_id, media_id=media_id).render())
    raise ValueError(f"a {reply.kind} reply does not fit in a passive answer")


def callback_routes(codec: WeComCodec, receive: Receive, submit: Submit, config: WeComConfig,
                    max_body_bytes: int, pictures: PictureMedia) -> list[web.RouteDef]:
    """`receive(key, message, deadline)` stores the message durably (False: a retry) and, when its
    replies are queued before `deadline` (time.monotonic()), returns them (`Answered`)."""

    verify = url_verification(codec, CHANNEL)

    limit = min(max_body_bytes, CALLBACK_MAX_BYTES)

    async def render(claim: outbox_store.Claim) -> str:
        media_id = await pictures(claim) if is_picture(claim.payload) else None
        return codec.seal(passive_xml(claim, config.corp_id, config.agent_id, media_id))

    async def callback(request: web.Request) -> web.StreamResponse:
        # WeCom waits 5 s for the answer, counted from its request: so is our passive-reply budget.
        deadline = time.monotonic() + config.passive_reply_seconds
        try:
            # Cheapest first: the query, then a bounded read, then the signature, then real work.
            refuse_oversized(request, limit)
            checked = codec.check_query(request.query)
            body = await read_body(request, limit)
            received = read_message(codec.decrypt(request.query, body, checked=checked))
        except CallbackRejected as err:
            log.warning("wecom callback refused: %s", err.reason)
            CALLBACKS.labels("rejected").inc()
            return web.Response(status=err.status, text=err.reason)
        except UnicodeDecodeError:
            log.warning("wecom callback refused: body is not UTF-8")
            CALLBACKS.labels("rejected").inc()
            return web.Response(status=400, text="not UTF-8")
        if received.message is None:
            return web.Response(text="")
        try:
            stored, answered = await receive(received.dedupe_key, received.message, deadline)
        except Exception as err:
            # Not stored, so not acknowledged: WeCom will retry.
            log.error("wecom callback not stored (%s); answering 503", type(err).__name__)
            CALLBACKS.labels("failed").inc()
            return web.Response(status=503, text="try again")
        CALLBACKS.labels("accepted" if stored else "duplicate").inc()
        if not stored:
            log.info("wecom retry de-duplicated: %s", received.dedupe_key.split(":", 2)[1])
        # An empty 200 is WeCom's "received": the answer goes out later through message/send.
        return await respond(request, CHANNEL, answered, deadline, submit, render, "")

    return [web.get("/wecom/callback", verify), web.post("/wecom/callback", callback)]


def fit(content: str, limit: int = MAX_CONTENT_BYTES) -> str:
    data = content.encode("utf-8")
    if len(data) <= limit:
        return content
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"


def _button_key(command: str) -> str:
    # Cutting a command short could make the button run a different one: refuse instead.
    if len(command.encode("utf-8")) > 1024:
        raise ValueError(f"button command over WeCom's 1,024-byte key limit: {command[:40]!r}…")
    return command


class WeComSender(MediaSender):
    """Sends one outbox payload to one member through message/send."""

    channel = CHANNEL
    client: WeComClient

    async def send(self, recipient: str, payload: dict[str, Any], *, message_id: int, duplicate_check: bool,
                   duplicate_window: int) -> None:
        if payload.get("kind") == "button_label":  # not a message: the tapped card changes
            await self.client.update_button(recipient, payload["response_code"], payload["label"][:MAX_LABEL_CHARS])
            return
        body = await self.body_of(payload, message_id)
        body["touser"] = recipient
        if duplicate_check:
            # WeCom drops a message identical to one this member got within the window.
            body["enable_duplicate_check"] = 1
            body["duplicate_check_interval"] = duplicate_window
        await self.client.send_message(body)

    async def _body(self, reply: Reply, message_id: int) -> dict[str, Any]:
        if reply.kind == "text":
            return {"msgtype": "text", "text": {"content": fit(reply.content)}}
        if reply.kind == "markdown":
            return {"msgtype": "markdown", "markdown": {"content": fit(reply.content)}}
        if reply.kind == "news":
            article = {"title": fit(reply.title, NEWS_TITLE_BYTES), "description": fit(reply.description, NEWS_DESCRIPTION_BYTES),
                       "url": reply.url}
            if reply.picurl:
                article["picurl"] = reply.picurl
            return {"msgtype": "news", "news": {"articles": [article]}}
        if not reply.buttons and not reply.url:
            # A text_notice card must have a click action; without one, plain text says the same.
            return {"msgtype": "text", "text": {"content": fit(f"{reply.title}\n{reply.description}".strip())}}
        card: dict[str, Any] = {
            "card_type": "button_interaction" if reply.buttons else "text_notice",
            "main_title": {"title": reply.title[:36], "desc": reply.description[:44]},
            # Stable across resends, so WeCom's duplicate check recognises a repeat.
            "task_id": reply.card_id or f"pb-{message_id}",
        }
        if reply.url:
            card["card_action"] = {"type": 1, "url": reply.url}
        if reply.buttons:
            card["button_list"] = [{"text": b.text[:10], "key": _button_key(b.command)} for b in reply.buttons[:6]]
        return {"msgtype": "template_card", "template_card": card}


class WeComChannel:
    """The brand's WeCom app: always on (its user ids are members' userids, store/bindings.HOME)."""

    name = CHANNEL

    def enabled(self, config: Config) -> bool:
        return True

    def send_limits(self, config: Config) -> SendLimits:
        return SendLimits(config.wecom.member_messages_per_minute, config.wecom.member_messages_per_hour)

    def routes(self, config: Config, pipeline: Pipeline) -> list[web.RouteDef]:
        return callback_routes(WeComCodec(config.wecom), receiver(CHANNEL, pipeline, config.wecom, pick_passive),
                               submitter(CHANNEL, pipeline), config.wecom, config.server.max_body_bytes,
                               picture_media(CHANNEL, pipeline))

    def sender(self, config: Config, kit: SendingKit) -> WeComSender:
        return WeComSender(WeComClient(config.wecom, kit.http, kit.shared), kit.posters, kit.shared, kit.sources)
