"""Turns an incoming message into (command, arguments), checks the role, runs the handler.

The command table itself lives in handlers/__init__.py and the types it is made of in
handlers/context.py; this module only knows how to use one.
"""
from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.metrics import COMMAND_OUTCOMES
from handlers import answers, keep
from handlers.context import (FOLLOWER, GUEST, ArgError, CommandTable, Context, CustomerContact, MediaDownloads,
                              is_chinese)
from handlers.replies import Incoming, Reply
from store.errors import Refusal
from store.bindings import HOME, member_for
from store.inbox import Sender
from store.models import Member

log = logging.getLogger(__name__)


class Router:
    def __init__(self, commands: CommandTable, config: Config, customers: CustomerContact | None = None,
                 media: MediaDownloads | None = None) -> None:
        self.commands = commands
        self.config = config
        self.customers = customers
        self.media = media

    async def dispatch(self, session: AsyncSession, message: Incoming, message_id: int | None = None,
                       sender: Sender | None = None) -> list[Reply]:
        """`message_id`: the inbox row being answered, handed to the handler (Context.message_id).
        `sender`: its member as read just before (store.inbox.add_reading_sender), instead of reading it here."""
        line = message.event_key if message.kind == "card_event" else message.text
        line = line.replace("\u3000", " ").strip()
        if sender is None:
            member = await member_for(session, message.channel, message.user_id)
        else:
            # Into this session as it was read, without reading it again; changes handlers make to it
            # are written when the session commits, as those to a member it loaded itself.
            member = await session.merge(sender.member, load=False) if sender.member is not None else None
        if member is None:
            # Strangers in WeCom may join with an invite; elsewhere they may bind to a member.
            stranger = GUEST if message.channel == HOME else FOLLOWER
            command = self.commands.lookup(self.commands.split(line)[0])
            if command is None or stranger not in command.roles:
                return [answers.unbound(line) if stranger == FOLLOWER else answers.unregistered(message.user_id, line)]
            # Not stored: the handler decides whether this person becomes a member.
            member = Member(userid=message.user_id, name=message.user_id, role=stranger, partner_id=None)
        if message.kind == "media":
            # A picture or file: staff who may `keep` it get the offer; everyone else, text only.
            ctx = self._context(session, member, message, "zh", message_id)
            if not message.media_id or not ctx.may_use("keep"):
                return [answers.TEXT_ONLY]
            return [await keep.offer(ctx, message.media_id, message.media_type, message.filename)]
        if message.kind == "unsupported":
            return [answers.TEXT_ONLY]
        if not line:
            return [answers.EMPTY]

        word, rest = self.commands.split(line)
        command = self.commands.lookup(word)
        lang = "zh" if is_chinese(word if command else line) else "en"
        ctx = self._context(session, member, message, lang, message_id)
        if command is None:
            return [answers.unknown(ctx, word, self.commands.closest(word, member.role, lang))]
        if member.role not in command.roles:
            return [answers.not_for_role(ctx, command)]
        log.info("command %s from member %s", command.name, member.id)
        try:
            # Handlers raise ArgError only before they write anything (they validate first).
            result = await command.handler(ctx, command.parse(rest))
        except ArgError as err:
            COMMAND_OUTCOMES.labels(command.name, "bad_input").inc()
            return [answers.bad_input(ctx, err, command)]
        except Refusal as refusal:
            COMMAND_OUTCOMES.labels(command.name, "refused").inc()
            return [answers.sorry(ctx, refusal)]
        COMMAND_OUTCOMES.labels(command.name, "done").inc()
        return [result] if not isinstance(result, (list, tuple)) else list(result)

    def _context(self, session: AsyncSession, member: Member, message: Incoming, lang: str,
                 message_id: int | None = None) -> Context:
        return Context(member=member, lang=lang, session=session, config=self.config, commands=self.commands,
                       channel=message.channel, user_id=message.user_id, customers=self.customers, media=self.media,
                       message_id=message_id)
