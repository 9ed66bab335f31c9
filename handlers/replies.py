"""The one incoming-message type every channel produces, and the replies handlers return.

Channels translate between these and their platform (XML callbacks, message/send bodies);
handlers and the router see nothing else.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Union

IncomingKind = Literal["text", "card_event", "media", "unsupported"]


@dataclass(frozen=True)
class Incoming:
    channel: str
    user_id: str
    kind: IncomingKind
    text: str = ""
    # For card button clicks: the button's key (a command line such as "poster 12") and the card.
    event_key: str = ""
    card_task_id: str = ""
    response_code: str = ""
    create_time: int = 0
    # For an image or file sent to the bot ("media"): the platform's media id (WeCom keeps it 3 days),
    # "image" or "file", and a file's name.
    media_id: str = ""
    media_type: str = ""
    filename: str = ""

    def to_payload(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Incoming:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in names})


@dataclass(frozen=True)
class Text:
    content: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True)
class Markdown:
    content: str
    kind: Literal["markdown"] = "markdown"


@dataclass(frozen=True)
class Image:
    """A picture to send; `path` is a file the sender uploads as temporary media."""

    path: str
    kind: Literal["image"] = "image"


@dataclass(frozen=True)
class Poster:
    """A member's personal poster, rendered (and cached) by the sender: any instance can send it."""

    template: str
    qr_url: str
    member_name: str
    partner_name: str
    task_title: str
    kind: Literal["poster"] = "poster"


@dataclass(frozen=True)
class Stamped:
    """A content image with the member's QR code stamped on it, drawn (and cached) by the sender from the
    stored bytes (`content_id`, identified by their `sha256`): any instance can send it."""

    content_id: int
    sha256: str
    qr_url: str
    kind: Literal["stamped"] = "stamped"


@dataclass(frozen=True)
class Chart:
    """A report chart as plain data (bot/render/charts.py documents the spec); the sender draws it, so
    any instance can send it and the outbox row stays small."""

    spec: dict[str, Any]
    kind: Literal["chart"] = "chart"


@dataclass(frozen=True)
class Button:
    text: str
    # The command line the button runs, exactly as if the member had typed it.
    command: str


@dataclass(frozen=True)
class Card:
    title: str
    description: str = ""
    url: str = ""
    buttons: tuple[Button, ...] = field(default_factory=tuple)
    # Stable id for WeCom's card task_id: a resend of the same card must be identical for WeCom's
    # duplicate check to recognise it.
    card_id: str = ""
    # Said instead of `description` where the buttons are shown as the commands they run (WeChat's
    # message menu lists "海报 2", not a button labelled 我的海报); empty: `description` fits both.
    menu_description: str = ""
    kind: Literal["card"] = "card"


@dataclass(frozen=True)
class News:
    """A link shared as an article: title, description and cover picture, tapped to open `url` (WeCom's
    and WeChat's news message). Channels cut title and description to their own limits."""

    title: str
    url: str
    description: str = ""
    picurl: str = ""
    kind: Literal["news"] = "news"


@dataclass(frozen=True)
class ButtonLabel:
    """What the card button the member tapped reads from now on (e.g. "已领取"): WeCom greys the card's
    buttons out under this label, so only a handler whose action is done for good returns one. It
    changes the card only when the message was a tap on a card button (the inbox fills in the tap's
    `response_code`); after a typed command, or on a channel without cards, there is none to change."""

    label: str
    response_code: str = ""
    kind: Literal["button_label"] = "button_label"


Reply = Union[Text, Markdown, Image, Poster, Stamped, Chart, Card, News, ButtonLabel]
Picture = Union[Image, Poster, Stamped, Chart]  # sent as the platform's uploaded media
PICTURES = (Image, Poster, Stamped, Chart)
_REPLY_TYPES: dict[str, type] = {"text": Text, "markdown": Markdown, "image": Image, "poster": Poster, "stamped": Stamped,
                                 "chart": Chart, "card": Card, "news": News, "button_label": ButtonLabel}
# Each kind's field names, looked up once: a broadcast rebuilds thousands of replies from payloads.
_FIELD_NAMES: dict[str, frozenset[str]] = {kind: frozenset(f.name for f in dataclasses.fields(cls))
                                           for kind, cls in _REPLY_TYPES.items()}


def is_picture(payload: dict[str, Any]) -> bool:
    return _REPLY_TYPES.get(payload.get("kind", "")) in PICTURES


def reply_to_payload(reply: Reply) -> dict[str, Any]:
    return dataclasses.asdict(reply)


def reply_from_payload(payload: dict[str, Any]) -> Reply:
    kind = payload["kind"]
    cls = _REPLY_TYPES[kind]
    names = _FIELD_NAMES[kind]
    values = {k: v for k, v in payload.items() if k in names}
    if kind == "card":
        values["buttons"] = tuple(Button(**b) for b in payload.get("buttons", ()))
    return cls(**values)  # type: ignore[no-any-return]
