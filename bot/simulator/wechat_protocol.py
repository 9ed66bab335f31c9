"""The WeChat Official Account protocol as the platform applies it, in pure functions: callback
signatures, custom menus, customer-service messages and passive replies."""
from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException

from bot.simulator.common import decrypt_reply

MAX_TEXT_BYTES = 2048
# Menu button types whose click reaches the bot as an event with the button's key.
KEY_TYPES = {"click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin",
             "location_select"}
# Other real types, checked only for their required field (the bot does not use them).
OTHER_TYPES = {"media_id": "media_id", "article_id": "article_id", "article_view_limited": "article_id",
               "miniprogram": "appid"}

Problem = tuple[int, str]


def _size(text: Any) -> int:
    return len(text.encode("utf-8")) if isinstance(text, str) else 0


def _is_web_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def check_menu(menu: Any) -> Problem | None:
    """menu/create: 1-3 top-level buttons, each a folder of 1-5 sub-buttons or a button with a type."""
    buttons = menu.get("button") if isinstance(menu, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return 40016, "invalid button size"
    for button in buttons:
        if not isinstance(button, dict):
            return 47001, "data format error"
        subs = button.get("sub_button", [])
        if not isinstance(subs, list):
            return 47001, "data format error"
        if subs:
            # A folder: WeChat ignores its own type; only its name and sub-buttons matter.
            if _size(button.get("name")) == 0 or _size(button.get("name")) > 16:
                return 40018, "invalid button name size"
            if len(subs) > 5:
                return 40023, "invalid sub button size"
            for sub in subs:
                if not isinstance(sub, dict) or sub.get("sub_button"):
                    return 40023, "invalid sub button size"  # only two levels exist
                if (problem := _check_leaf(sub, sub_level=True)) is not None:
                    return problem
        elif (problem := _check_leaf(button, sub_level=False)) is not None:
            return problem
    return None


def _check_leaf(button: dict[str, Any], *, sub_level: bool) -> Problem | None:
    # WeChat reports a bad sub-button name with the same code as a top-level one.
    if _size(button.get("name")) == 0 or _size(button.get("name")) > (60 if sub_level else 16):
        return 40018, "invalid button name size"
    kind = button.get("type")
    if kind in KEY_TYPES:
        if not 1 <= _size(button.get("key")) <= 128:
            return 40019, "invalid button key size"
    elif kind == "view":
        if _size(button.get("url")) > 1024:
            return 40020, "invalid button url size"
        if not _is_web_url(button.get("url")):
            return (40054, "invalid sub button url domain") if sub_level else (40055, "invalid button url domain")
    elif kind in OTHER_TYPES:
        if not isinstance(button.get(OTHER_TYPES[kind]), str) or not button[OTHER_TYPES[kind]]:
            return 47001, "data format error"
    else:
        return 40017, "invalid button type"
    return None


def menu_as_stored(menu: dict[str, Any]) -> dict[str, Any]:
    """The menu as menu/get answers it: every button carries a sub_button list, empty for leaves."""
    def button(b: dict[str, Any]) -> dict[str, Any]:
        return {**b, "sub_button": [button(s) for s in b.get("sub_button") or []]}
    return {"button": [button(b) for b in menu["button"]]}


def check_custom_message(body: dict[str, Any], media_ok: Any) -> Problem | None:
    """message/custom/send content (the recipient and the window are checked by the caller)."""
    msgtype = body.get("msgtype")
    part = body.get(msgtype) if isinstance(msgtype, str) else None
    if msgtype not in ("text", "image", "news", "msgmenu"):
        return 40008, "invalid message type"
    if not isinstance(part, dict):
        return 47001, "data format error"
    if msgtype == "text":
        content = part.get("content")
        if not isinstance(content, str) or not content:
            return 44004, "empty content"
        if _size(content) > MAX_TEXT_BYTES:
            return 45002, "content size out of limit"
    elif msgtype == "image":
        if not media_ok(part.get("media_id")):
            return 40007, "invalid media_id"
    elif msgtype == "msgmenu":
        # A message menu: tapping an item sends its content back as the follower's text message.
        items = part.get("list")
        if not isinstance(items, list) or not items or not all(
                isinstance(i, dict) and isinstance(i.get("id"), str) and i["id"]
                and isinstance(i.get("content"), str) and i["content"] for i in items):
            return 47001, "data format error"
        if any(_size(part.get(k) or "") > MAX_TEXT_BYTES for k in ("head_content", "tail_content")):
            return 45002, "content size out of limit"
    else:
        articles = part.get("articles")
        # Since 2023 a customer-service news message holds exactly one article.
        if not isinstance(articles, list) or len(articles) != 1:
            return 45008, "article size out of limit"
        article = articles[0]
        if not isinstance(article, dict) or not article.get("title") or not _is_web_url(article.get("url")):
            return 47001, "data format error"
    return None


def parse_xml(text: str) -> dict[str, Any]:
    """The <xml> element of a message or reply, without DTDs or entities (ValueError otherwise)."""
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise ValueError("XML with a DTD or entities")
    try:
        root = xmltodict.parse(text, disable_entities=True)
    except Exception as err:  # expat raises its own error type
        raise ValueError(f"not XML ({err})") from None
    xml = root.get("xml") if isinstance(root, dict) else None
    if not isinstance(xml, dict):
        raise ValueError("no <xml> root element")
    return xml


def parse_passive_reply(xml: dict[str, Any], openid: str, original_id: str, media_ok: Any,
                        max_articles: int) -> dict[str, Any]:
    """A decrypted passive reply as a dict like a custom/send payload; ValueError names the problem."""
    if xml.get("ToUserName") != openid:
        raise ValueError(f"ToUserName is {xml.get('ToUserName')!r}, not the follower's openid")
    if xml.get("FromUserName") != original_id:
        raise ValueError(f"FromUserName is {xml.get('FromUserName')!r}, not the account's original id")
    if not str(xml.get("CreateTime") or "").isdigit():
        raise ValueError("CreateTime missing or not a number")
    msgtype = xml.get("MsgType")
    if msgtype == "text":
        if not isinstance(xml.get("Content"), str) or not xml["Content"]:
            raise ValueError("empty Content")
        return {"msgtype": "text", "content": xml["Content"]}
    if msgtype == "image":
        media_id = xml.get("Image", {}).get("MediaId") if isinstance(xml.get("Image"), dict) else None
        if not media_ok(media_id):
            raise ValueError("Image/MediaId is not an uploaded media")
        return {"msgtype": "image", "media_id": media_id}
    if msgtype == "news":
        items = xml.get("Articles", {}).get("item") if isinstance(xml.get("Articles"), dict) else None
        items = [items] if isinstance(items, dict) else items
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise ValueError("news without Articles/item")
        # To a message a follower typed WeChat accepts one article; to an event up to 8.
        if len(items) > max_articles or str(xml.get("ArticleCount")) != str(len(items)):
            raise ValueError(f"ArticleCount {xml.get('ArticleCount')!r} for {len(items)} item(s), "
                             f"at most {max_articles}")
        return {"msgtype": "news", "articles": [
            {"title": i.get("Title") or "", "description": i.get("Description") or "",
             "picurl": i.get("PicUrl") or "", "url": i.get("Url") or ""} for i in items]}
    raise ValueError(f"reply MsgType {msgtype!r} is not simulated (text, image or news)")


def open_reply(xml: dict[str, Any], crypto: WeChatCrypto, mode: str) -> dict[str, Any]:
    """A reply's plaintext fields: in compatible and safe mode decrypted after its MsgSignature is
    verified (compatible mode also takes a plaintext reply, safe mode does not)."""
    if "Encrypt" not in xml:
        if mode == "safe":
            raise ValueError("a plaintext reply in safe mode")
        return xml
    if mode == "plain":
        raise ValueError("an encrypted reply in plaintext mode")
    return parse_xml(decrypt_reply(crypto, xml, InvalidAppIdException, "encrypted for another AppID"))


def signature(*parts: str) -> str:
    """WeChat's signature: sha1 of the parts sorted and joined (wechatpy.utils.check_signature)."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def xml_field(plaintext: str, name: str) -> str:
    """One top-level field of a message WeChat is about to send (the simulator's own XML)."""
    found = re.search(rf"<{name}>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</{name}>", plaintext, re.S)
    return found.group(1) if found else ""


def interaction_kind(plaintext: str) -> str:
    """What kind of interaction a callback is, for the customer-service window and quota: only
    typed messages, click/scan-code menu buttons and subscribing open one."""
    if xml_field(plaintext, "MsgType") != "event":
        return "message"
    event = xml_field(plaintext, "Event")
    if event == "CLICK" or event in ("scancode_push", "scancode_waitmsg"):
        return "click"
    return event  # subscribe, unsubscribe, VIEW, ...
