"""What WeCom does with the answer to a callback and with template-card taps, as the simulator plays it.

A passive reply (企业微信 "被动回复消息") comes back encrypted in the callback's HTTP answer: WeCom checks
its MsgSignature, decrypts it (the receive id must be the corp id), and shows it to the member — text,
image or news, or for a tap on a template card, `update_button`: the tapped card's buttons greyed out
under a new label. The same change can be made later with message/update_template_card and the tap's
response code (once per code, within 72 hours).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException

from bot.simulator.common import ChatEntry, _error, decrypt_reply
from bot.simulator.wechat_protocol import parse_xml

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 2048
RESPONSE_CODE_SECONDS = 72 * 3600


def open_passive_reply(answer: bytes, crypto: WeChatCrypto) -> dict[str, Any] | None:
    """The decrypted reply in a callback's answer (None for an empty answer: "received"); ValueError
    names what WeCom would not take."""
    text = answer.decode("utf-8").strip()
    if not text:
        return None
    envelope = parse_xml(text)
    if "Encrypt" not in envelope:
        raise ValueError("a plaintext reply (WeCom takes only encrypted ones)")
    return parse_xml(decrypt_reply(crypto, envelope, InvalidCorpIdException, "encrypted for another corp"))


def read_passive_reply(xml: dict[str, Any], userid: str, corp_id: str, media_ok: Callable[[Any], bool],
                       card_tap: bool) -> dict[str, Any]:
    """A decrypted passive reply as a message/send-like part with its msgtype; ValueError names the problem."""
    if xml.get("ToUserName") != userid:
        raise ValueError(f"ToUserName is {xml.get('ToUserName')!r}, not the member's userid")
    if xml.get("FromUserName") != corp_id:
        raise ValueError(f"FromUserName is {xml.get('FromUserName')!r}, not the corp id")
    if not str(xml.get("CreateTime") or "").isdigit():
        raise ValueError("CreateTime missing or not a number")
    msgtype = xml.get("MsgType")
    if msgtype == "text":
        content = xml.get("Content")
        if not isinstance(content, str) or not content:
            raise ValueError("empty Content")
        # WeCom cuts text over 2,048 bytes rather than refusing it.
        return {"msgtype": "text", "content": content.encode()[:MAX_TEXT_BYTES].decode("utf-8", "ignore")}
    if msgtype == "image":
        image = xml.get("Image")
        media_id = image.get("MediaId") if isinstance(image, dict) else None
        if not media_ok(media_id):
            raise ValueError("Image/MediaId is not an uploaded media")
        return {"msgtype": "image", "media_id": media_id}
    if msgtype == "news":
        articles = xml.get("Articles")
        items = articles.get("item") if isinstance(articles, dict) else None
        items = [items] if isinstance(items, dict) else items
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and i.get("Title") for i in items):
            raise ValueError("news without Articles/item titles")
        if len(items) > 8 or str(xml.get("ArticleCount")) != str(len(items)):
            raise ValueError(f"ArticleCount {xml.get('ArticleCount')!r} for {len(items)} item(s), at most 8")
        return {"msgtype": "news", "articles": [
            {"title": i.get("Title") or "", "description": i.get("Description") or "", "url": i.get("Url") or "",
             "picurl": i.get("PicUrl") or ""} for i in items]}
    if msgtype == "update_button":
        if not card_tap:
            raise ValueError("update_button answers only a template card tap")
        button = xml.get("Button")
        label = button.get("ReplaceName") if isinstance(button, dict) else None
        if not isinstance(label, str) or not label:
            raise ValueError("update_button without Button/ReplaceName")
        return {"msgtype": "update_button", "replace_name": label}
    raise ValueError(f"reply MsgType {msgtype!r} is not simulated (text, image, news, update_button)")


@dataclass
class _Tap:
    userid: str
    task_id: str
    at: float
    used: bool = False


class Cards:
    """Template cards members got (by member and task_id) and the response codes their taps made."""

    def __init__(self, changed: Callable[[ChatEntry], None]) -> None:
        self._cards: dict[tuple[str, str], ChatEntry] = {}
        self._taps: dict[str, _Tap] = {}
        self._changed = changed

    def sent(self, entry: ChatEntry) -> None:
        task_id = entry.body.get("task_id")
        if isinstance(task_id, str) and task_id:
            self._cards[(entry.userid, task_id)] = entry

    def tapped(self, userid: str, task_id: str, response_code: str) -> None:
        self._taps[response_code] = _Tap(userid, task_id, time.time())

    def card(self, userid: str, task_id: str) -> ChatEntry | None:
        return self._cards.get((userid, task_id))

    def relabel(self, userid: str, task_id: str, label: str) -> bool:
        """Grey out the buttons of this member's card under `label`; False if there is no such card."""
        entry = self._cards.get((userid, task_id))
        if entry is None or not entry.body.get("button_list"):
            return False
        entry.body = {**entry.body, "replace_name": label}
        self._changed(entry)
        return True

    def update_by_code(self, response_code: str, userids: list[str], label: str) -> str | None:
        """message/update_template_card's button update; the problem, or None when done."""
        tap = self._taps.get(response_code)
        if tap is None or tap.used or tap.at < time.time() - RESPONSE_CODE_SECONDS:
            return "invalid response_code"
        if userids and tap.userid not in userids:
            return "the response_code is not for these users"
        tap.used = True
        self.relabel(tap.userid, tap.task_id, label)
        return None


class PassiveAnswers:
    """The WeCom simulator's side of passive replies and card updates (mixed into WeComSimulator)."""

    crypto: WeChatCrypto
    corp_id: str
    agent_id: int
    cards: Cards
    api_calls: defaultdict[str, int]
    live_media: Callable[[Any], bool]
    record: Callable[..., ChatEntry]
    _check_token: Callable[[web.Request], web.Response | None]

    def take_answer(self, userid: str, answer: bytes, card_task_id: str = "") -> tuple[str | None, dict[str, Any] | None]:
        """What WeCom does with the answer to a callback from `userid` (`card_task_id`: a tap on that
        card): show the member a passive reply in it, or relabel the card. (why WeCom dropped it, the reply)."""
        try:
            xml = open_passive_reply(answer, self.crypto)
            if xml is None:
                return None, None  # an empty answer: "received", replies come through message/send
            reply = read_passive_reply(xml, userid, self.corp_id, self.live_media, card_tap=bool(card_task_id))
        except (ValueError, UnicodeDecodeError) as err:
            log.warning("wecom simulator: bad passive reply: %s", err)
            return f"bad passive reply: {err}", None  # WeCom drops it: the member sees nothing
        self.api_calls["passive"] += 1
        shown = {k: v for k, v in reply.items() if k != "msgtype"}
        if reply["msgtype"] == "update_button":
            self.cards.relabel(userid, card_task_id, reply["replace_name"])
        else:
            self.record(userid, "bot", reply["msgtype"], {**shown, "via": "passive"})
        return None, reply

    async def api_update_card(self, request: web.Request) -> web.Response:
        """message/update_template_card: only the button update (`button.replace_name`) is simulated."""
        self.api_calls["message/update_template_card"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        try:
            body = await request.json()
        except ValueError:
            return _error(47001, "data format error")
        if not isinstance(body, dict) or not body.get("response_code"):
            return _error(40078, "invalid response_code")
        if body.get("agentid") != self.agent_id:
            return _error(40056, "invalid agentid")
        button = body.get("button")
        label = button.get("replace_name") if isinstance(button, dict) else None
        if not isinstance(label, str) or not label:
            return _error(47001, "data format error")
        userids = body.get("userids") if isinstance(body.get("userids"), list) else []
        if (problem := self.cards.update_by_code(str(body["response_code"]), userids, label)) is not None:
            return _error(40078, problem)
        return web.json_response({"errcode": 0, "errmsg": "ok"})
