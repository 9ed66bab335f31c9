"""Passive replies: answering a chat message in the callback's own HTTP response, for every channel.

WeCom and WeChat both let the app put one reply into the answer to the callback (encrypted like the
callback), if it comes within their 5 s. The inbox hands a waiting callback the message's replies
still unsent (store.outbox.add(claimed=True)) when they are queued before its deadline; one of them
is recorded ANSWERED in the outbox, in the same transaction, *before* it is written into the answer.
It reaches the member exactly once: a picked reply that cannot go into the answer, or is too late,
is taken back from the answer (store.outbox.take_answered) and goes through the outbox with the
others; an answer that never arrived (the instance died after its commit, the network cut it) makes
the platform retry, and the retry's answer carries the reply (store.outbox.replay_answered), only
one of the two. How a reply looks in the answer (and which one is fit for it) is the channel's own
business (`Render`). A picture (poster, chart, stamped copy) goes into the answer too when it is drawn
and uploaded before the deadline (`picture_media`); if not, it is sent as a message, as any late reply.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from bot.channels.base import Pipeline
from bot.metrics import OUTBOX, REPLIES
from handlers.replies import PICTURES, Incoming, reply_from_payload
from store import outbox as outbox_store

log = logging.getLogger(__name__)

# Which of a message's replies (as outbox payloads) the channel can put into the callback's answer.
PickPassive = Callable[[list[dict[str, Any]]], "int | None"]


@dataclass(frozen=True)
class Answered:
    """A message's replies, queued claimed and handed to the callback waiting for them. `passive`, if
    any, is one of them, recorded answered in the same transaction as the replies themselves (no
    round trip of its own): the callback puts it into its answer or, if it cannot, sends it as a
    message. A retried callback gets only the passive reply its first answer should have carried."""

    claims: list[outbox_store.Claim]
    passive: outbox_store.Claim | None = None
    # Called once `passive` is written into the answer, so the platform's retries leave it there.
    written: Callable[[], Awaitable[None]] | None = None


# receive(key, message, deadline): stored?, and the replies if they were queued before the deadline.
Receive = Callable[[str, Incoming, float], Awaitable[tuple[bool, "Answered | None"]]]
# The answer body (sealed XML) for the reply `Answered.passive` (a picture is uploaded first).
Render = Callable[[outbox_store.Claim], Awaitable[str]]
# A picture reply's uploaded media id (drawn and uploaded by the channel's sender, as for a message).
PictureMedia = Callable[[outbox_store.Claim], Awaitable[str]]
Submit = Callable[[list[outbox_store.Claim]], None]


def submitter(channel: str, pipeline: Pipeline) -> Submit:
    """Gives replies that are not in the answer to the outbox, which sends them in order."""

    def submit(claims: list[outbox_store.Claim]) -> None:
        if claims:
            REPLIES.labels(channel, "active").inc(len(claims))
            pipeline.outbox().submit_claimed(claims)

    return submit


def picture_media(channel: str, pipeline: Pipeline) -> PictureMedia:
    """Uploads a picture reply as the channel's sender would for message/send (a poster's upload is
    reused from then on, shared.MEDIA_REUSE_SECONDS), so the answer can carry its media id."""

    async def media_id(claim: outbox_store.Claim) -> str:
        reply = reply_from_payload(claim.payload)
        if not isinstance(reply, PICTURES):
            raise TypeError(f"a {reply.kind} reply is not a picture")
        return await pipeline.outbox().senders[channel].images.media_id(reply, claim.id)

    return media_id


class PassiveSettings(Protocol):
    passive_reply_seconds: float  # 0: off


def receiver(channel: str, pipeline: Pipeline, settings: PassiveSettings, pick: PickPassive) -> Receive:
    """The inbox's receive for a channel's callback: with a budget, wait until the deadline for the replies."""

    async def receive(dedupe_key: str, message: Incoming, deadline: float) -> tuple[bool, Answered | None]:
        if settings.passive_reply_seconds <= 0:  # passive replies are off: the inbox sends everything itself
            return await pipeline.inbox().receive(channel, dedupe_key, message), None
        return await pipeline.inbox().receive_and_wait(channel, dedupe_key, message, deadline, pick)

    return receive


async def respond(request: web.Request, channel: str, answered: Answered | None, deadline: float,
                  submit: Submit, render: Render, acknowledgement: str) -> web.StreamResponse:
    """The callback's answer: the reply picked for it if it is still in time, else the plain
    acknowledgement; every other reply goes to the outbox, in order, after the answer is written."""
    if answered is None or not answered.claims:
        return web.Response(text=acknowledgement)
    passive = answered.passive
    try:
        if passive is None or time.monotonic() > deadline:
            # Too late, the platform has hung up and will retry (and the retry is a duplicate): a message.
            passive = None
            return web.Response(text=acknowledgement)
        try:
            # A picture's drawing and upload must fit in what is left of the budget (text takes no time).
            body = await asyncio.wait_for(render(passive), timeout=deadline - time.monotonic())
        except asyncio.TimeoutError:
            log.info("%s: a picture reply was not uploaded in time; sending it as a message", channel)
            passive = None
            return web.Response(text=acknowledgement)
        except Exception:  # a reply we cannot put in the answer still goes out as a message
            log.exception("%s: cannot render a passive reply; sending it as a message", channel)
            passive = None
            return web.Response(text=acknowledgement)
        answer = web.Response(text=body, content_type="application/xml")
        # Answer first, so the passive reply reaches the member before the ones that follow it.
        written = passive
        passive = None  # until the answer is written: a connection reset mid-answer sends it as a message
        await answer.prepare(request)
        await answer.write_eof()
        passive = written
        OUTBOX.labels("passive").inc()
        REPLIES.labels(channel, "passive").inc()
        if answered.written is not None:
            try:
                await answered.written()
            except Exception:  # a retry, were there one, would answer with the reply again
                log.exception("%s: cannot note a passive reply as written", channel)
        return answer
    finally:  # also when the platform hung up meanwhile: the others still go out (a passive reply
        # not put into the answer too, unless the platform's retry has taken it for its own answer)
        submit([c for c in answered.claims if c is not passive])


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    """Text that survives inside a CDATA section: no ']]>' (split across two sections) and no
    characters XML 1.0 forbids. Members' own words, lead names and task titles can hold either."""
    return _XML_INVALID.sub("", text).replace("]]>", "]]]]><![CDATA[>")
