"""Passive replies: answering a chat message in the callback's own HTTP response, for every channel.

WeCom and WeChat both let the app put one reply into the answer to the callback (encrypted like the
callback), if it comes within their 5 s. The inbox hands a waiting callback the message's replies
still unsent (store.outbox.add(claimed=True)) when they are queued before its deadline; one of them
is marked sent in the outbox *before* it is written into the answer, so it is sent exactly once: a
reply that cannot be marked, or is too late, goes through the outbox with the others. How a reply
looks in the answer (and which one is fit for it) is the channel's own business (`Render`).
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from bot.channels.base import Pipeline
from bot.metrics import OUTBOX, REPLIES
from handlers.replies import Incoming
from store import outbox as outbox_store

log = logging.getLogger(__name__)

# receive(key, message, deadline): stored?, and the replies if they were queued before the deadline.
Receive = Callable[[str, Incoming, float], Awaitable[tuple[bool, "list[outbox_store.Claim] | None"]]]
# The claim to answer with and its answer body (sealed XML), or None when none of them fits.
Render = Callable[[list[outbox_store.Claim]], "tuple[outbox_store.Claim, str] | None"]


@dataclass(frozen=True)
class ReplyHandoff:
    """How the callback passes on replies it got in time: `mark_passive(claim)` records one as sent
    in the answer (False: it could not), `submit(claims)` gives the others to the outbox."""

    mark_passive: Callable[[outbox_store.Claim], Awaitable[bool]]
    submit: Callable[[list[outbox_store.Claim]], None]


def reply_handoff(channel: str, pipeline: Pipeline) -> ReplyHandoff:
    async def mark_passive(claim: outbox_store.Claim) -> bool:
        try:
            async with pipeline.db().single_statement() as session:
                if not await outbox_store.mark_sent(session, [claim]):
                    return False  # another instance took the row over (our lease ran out): it sends it
        except Exception as err:
            log.warning("%s: cannot record a passive reply (%s); sending it as a message", channel,
                        type(err).__name__)
            return False
        OUTBOX.labels("passive").inc()
        return True

    def submit(claims: list[outbox_store.Claim]) -> None:
        if claims:
            REPLIES.labels(channel, "active").inc(len(claims))
            pipeline.outbox().submit_claimed(claims)

    return ReplyHandoff(mark_passive, submit)


class PassiveSettings(Protocol):
    passive_reply_seconds: float  # 0: off


def receiver(channel: str, pipeline: Pipeline, settings: PassiveSettings) -> Receive:
    """The inbox's receive for a channel's callback: with a budget, wait until the deadline for the replies."""

    async def receive(dedupe_key: str, message: Incoming,
                      deadline: float) -> tuple[bool, list[outbox_store.Claim] | None]:
        if settings.passive_reply_seconds <= 0:  # passive replies are off: the inbox sends everything itself
            return await pipeline.inbox().receive(channel, dedupe_key, message), None
        return await pipeline.inbox().receive_and_wait(channel, dedupe_key, message, deadline)

    return receive


async def respond(request: web.Request, channel: str, replies: list[outbox_store.Claim] | None, deadline: float,
                  handoff: ReplyHandoff, render: Render, acknowledgement: str) -> web.StreamResponse:
    """The callback's answer: one reply in it if one fits and it is still in time, else the plain
    acknowledgement; every other reply goes to the outbox, in order, after the answer is written."""
    if not replies:
        return web.Response(text=acknowledgement)
    passive: outbox_store.Claim | None = None
    try:
        try:
            rendered = render(replies)
        except Exception:  # a reply we cannot put in the answer still goes out as a message
            log.exception("%s: cannot render a passive reply; sending it as a message", channel)
            rendered = None
        # Too late, the platform has hung up and will retry (and the retry is a duplicate): send it as a message.
        if rendered is None or time.monotonic() > deadline or not await handoff.mark_passive(rendered[0]):
            return web.Response(text=acknowledgement)
        passive, body = rendered
        REPLIES.labels(channel, "passive").inc()
        answer = web.Response(text=body, content_type="application/xml")
        # Answer first, so the passive reply reaches the member before the ones that follow it.
        await answer.prepare(request)
        await answer.write_eof()
        return answer
    finally:  # also when the platform hung up meanwhile: the others still go out
        handoff.submit([c for c in replies if c is not passive])


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    """Text that survives inside a CDATA section: no ']]>' (split across two sections) and no
    characters XML 1.0 forbids. Members' own words, lead names and task titles can hold either."""
    return _XML_INVALID.sub("", text).replace("]]>", "]]]]><![CDATA[>")
