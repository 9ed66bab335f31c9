"""Turns an incoming message into (command, arguments), checks the role, runs the handler.

The command table itself lives in handlers/__init__.py and the types it is made of in
handlers/context.py; this module only knows how to use one.
"""
from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.metrics import COMMAND_OUTCOMES
from handlers.context import FOLLOWER, GUEST, ROLE_NAMES, ArgError, Command, CommandTable, Context, is_chinese, shorten
from handlers.replies import Incoming, Reply, Text
from store.errors import Refusal
from store.bindings import HOME, member_for
from store.models import Member

log = logging.getLogger(__name__)


class Router:
    def __init__(self, commands: CommandTable, config: Config) -> None:
        self.commands = commands
        self.config = config

    async def dispatch(self, session: AsyncSession, message: Incoming) -> list[Reply]:
        line = message.event_key if message.kind == "card_event" else message.text
        line = line.replace("\u3000", " ").strip()
        member = await member_for(session, message.channel, message.user_id)
        if member is None:
            # Strangers in WeCom may join with an invite; elsewhere they may bind to a member.
            stranger = GUEST if message.channel == HOME else FOLLOWER
            command = self.commands.lookup(self.commands.split(line)[0])
            if command is None or stranger not in command.roles:
                return [Text(_unbound(line) if stranger == FOLLOWER else _unregistered(message.user_id, line))]
            # Not stored: the handler decides whether this person becomes a member.
            member = Member(userid=message.user_id, name=message.user_id, role=stranger, partner_id=None)
        if message.kind == "unsupported":
            return [Text("我只看得懂文字命令，发送“帮助”查看可用命令。\nI understand text commands only: send help.")]
        if not line:
            return [Text("发送“帮助”查看可用命令。\nSend help to see what you can do.")]

        word, rest = self.commands.split(line)
        command = self.commands.lookup(word)
        lang = "zh" if is_chinese(word if command else line) else "en"
        ctx = Context(member=member, lang=lang, session=session, config=self.config, commands=self.commands,
                      channel=message.channel, user_id=message.user_id)
        if command is None:
            return [Text(self._unknown(ctx, word))]
        if member.role not in command.roles:
            return [Text(_refused(ctx, command))]
        log.info("command %s from member %s", command.name, member.id)
        try:
            # Handlers raise ArgError only before they write anything (they validate first).
            result = await command.handler(ctx, command.parse(rest))
        except ArgError as err:
            COMMAND_OUTCOMES.labels(command.name, "bad_input").inc()
            usage = command.help_zh if lang == "zh" else command.help_en
            return [Text(ctx.say(f"{err.en}.\nUsage: {usage}", f"{err.zh}。\n用法：{usage}"))]
        except Refusal as refusal:
            COMMAND_OUTCOMES.labels(command.name, "refused").inc()
            return [Text(ctx.say(f"Sorry: {refusal.en}.", f"抱歉：{refusal.zh}。"))]
        COMMAND_OUTCOMES.labels(command.name, "done").inc()
        return [result] if not isinstance(result, (list, tuple)) else list(result)

    def _unknown(self, ctx: Context, word: str) -> str:
        guess = self.commands.closest(word, ctx.member.role, ctx.lang)
        help_word = ctx.say("help", "帮助")
        if guess is None:
            return ctx.say(
                f"I don't know “{shorten(word)}”. Send {help_word} to see what you can do.",
                f"没有“{shorten(word)}”这个命令。发送“{help_word}”查看可用命令。",
            )
        example = guess.help_zh if ctx.lang == "zh" else guess.help_en
        return ctx.say(
            f"I don't know “{shorten(word)}”. Did you mean: {example}\nSend {help_word} for all commands.",
            f"没有“{shorten(word)}”这个命令。您是想用：{example}\n发送“{help_word}”查看全部命令。",
        )


def _refused(ctx: Context, command: Command) -> str:
    who_en = " and ".join(ROLE_NAMES[r][0] for r in sorted(command.roles))
    who_zh = "和".join(ROLE_NAMES[r][1] for r in sorted(command.roles))
    return ctx.say(
        f"“{command.name}” is for {who_en} only. Send help to see your commands.",
        f"“{command.name_zh}”仅限{who_zh}使用。发送“帮助”查看您可用的命令。",
    )


def _unbound(line: str) -> str:
    """All an unbound follower learns: how to bind (no user id to hand out, nothing about the brand's data)."""
    zh = "您好！请先绑定：向管理员索取绑定码，然后在这里发送“绑定 绑定码”。企业微信里的成员也可以在企业微信发送“绑定码”自助获取。"
    en = ("Hello! Bind your account first: ask your admin for a binding code and send: bind CODE. "
          "If you are in the brand's WeCom, send bindcode there to get one.")
    if is_chinese(line):
        return zh
    if line:
        return en
    return f"{zh}\n{en}"


def _unregistered(user_id: str, line: str) -> str:
    zh = (f"您好！您还没有开通本机器人。有邀请码请发送“加入 邀请码”；"
          f"没有的话，请把您的用户ID {user_id} 发给管理员为您开通。")
    en = (f"Hello! You are not registered with this bot yet. Have an invite code? Send: join CODE. "
          f"Otherwise ask your admin to add you; your user id is {user_id}.")
    if is_chinese(line):
        return zh
    if line:
        return en
    return f"{zh}\n{en}"
