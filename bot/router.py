"""Turns an incoming message into (command, arguments), checks the role, runs the handler.

The command table itself lives in handlers/__init__.py; this module only knows how to use one.
"""
from __future__ import annotations

import difflib
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.messages import Incoming, Reply, Text
from store.errors import Refusal
from store.bindings import WECHAT, member_for
from store.models import Member, utcnow

log = logging.getLogger(__name__)

PARTNER, MARKETER, ADMIN = "partner", "marketer", "admin"
EVERY_ROLE = frozenset({PARTNER, MARKETER, ADMIN})
# Someone the bot does not know yet: they may use only commands that list this role (join).
GUEST = "guest"
# A WeChat Official Account follower whose openid is not bound to a member: only `bind` works.
FOLLOWER = "follower"
ROLE_NAMES = {
    GUEST: ("people not registered yet", "未开通的用户"),
    FOLLOWER: ("WeChat followers not bound yet", "未绑定的微信关注者"),
    PARTNER: ("partner staff", "合作伙伴销售"),
    MARKETER: ("marketers", "市场人员"),
    ADMIN: ("admins", "管理员"),
}
# Longest command word shown back to a user in "unknown command" replies.
ECHO_LIMIT = 20
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ArgError(Exception):
    """Arguments that do not fit the command: the message is shown to the member."""

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en, self.zh = en, zh


@dataclass
class Context:
    """Everything a handler may use; handlers never reach for globals."""

    member: Member
    lang: str  # "en" or "zh": the language the command was written in
    session: AsyncSession
    config: Config
    commands: CommandTable
    now: datetime = field(default_factory=utcnow)
    # Where the message came from: "wecom" or "wechat", and the sender's id there (userid or openid).
    channel: str = "wecom"
    user_id: str = ""

    def say(self, en: str, zh: str) -> str:
        return zh if self.lang == "zh" else en


Handler = Callable[[Context, Any], Awaitable[Reply | Sequence[Reply]]]


def no_args(_text: str) -> None:
    return None


def parse_id(text: str) -> int:
    """`12`, `#12`, `＃１２` all mean 12."""
    token = unicodedata.normalize("NFKC", text).strip().removeprefix("#")
    # isdecimal: some digits (Kharosthi 𐩀) are isdigit() but int() refuses them.
    if not token.isdecimal() or len(token) > 9:
        raise ArgError(f"“{shorten(text)}” is not a number like 12", f"“{shorten(text)}”不是编号，例如 12")
    return int(token)


def optional_id(text: str) -> int | None:
    return parse_id(text) if text.strip() else None


@dataclass(frozen=True)
class Command:
    name: str
    name_zh: str
    roles: frozenset[str]
    handler: Handler
    help_en: str
    help_zh: str
    parse: Callable[[str], Any] = no_args
    aliases: tuple[str, ...] = ()

    def words(self) -> tuple[str, ...]:
        return (self.name, self.name_zh, *self.aliases)


class CommandTable:
    def __init__(self, commands: Iterable[Command]) -> None:
        self.commands = list(commands)
        self._by_word: dict[str, Command] = {}
        for command in self.commands:
            if not command.roles or not command.help_en or not command.help_zh:
                raise ValueError(f"command {command.name} needs roles and help in both languages")
            for word in command.words():
                key = word.lower()
                if key in self._by_word:
                    raise ValueError(f"command word {word!r} is used twice")
                self._by_word[key] = command
        # Longest first, so "我的线索" wins over "我的" when words are glued to their arguments.
        self._cjk_words = sorted((w for w in self._by_word if _CJK.search(w)), key=len, reverse=True)

    def lookup(self, word: str) -> Command | None:
        return self._by_word.get(word.lower())

    def split(self, line: str) -> tuple[str, str]:
        """Split a command line into its command word and the rest."""
        parts = line.split(maxsplit=1)
        word = unicodedata.normalize("NFKC", parts[0]) if parts else ""
        rest = parts[1] if len(parts) > 1 else ""
        if word.lower() not in self._by_word:
            # Chinese users often type 海报12 without a space.
            for cjk_word in self._cjk_words:
                if word.startswith(cjk_word):
                    return cjk_word, (word[len(cjk_word):] + " " + rest).strip()
        return word, rest

    def for_role(self, role: str) -> list[Command]:
        return [c for c in self.commands if role in c.roles]

    def closest(self, word: str, role: str, lang: str) -> Command | None:
        allowed = self.for_role(role)
        candidates = {(c.name_zh if lang == "zh" else c.name).lower(): c for c in allowed}
        candidates.update({a.lower(): c for c in allowed for a in c.aliases if len(a) > 1})
        match = difflib.get_close_matches(word.lower(), list(candidates), n=1, cutoff=0.5)
        return candidates[match[0]] if match else None


def is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Router:
    def __init__(self, commands: CommandTable, config: Config) -> None:
        self.commands = commands
        self.config = config

    async def dispatch(self, session: AsyncSession, message: Incoming) -> list[Reply]:
        line = message.event_key if message.kind == "card_event" else message.text
        line = line.replace("\u3000", " ").strip()
        member = await member_for(session, message.channel, message.user_id)
        if member is None:
            stranger = FOLLOWER if message.channel == WECHAT else GUEST
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
            usage = command.help_zh if lang == "zh" else command.help_en
            return [Text(ctx.say(f"{err.en}.\nUsage: {usage}", f"{err.zh}。\n用法：{usage}"))]
        except Refusal as refusal:
            return [Text(ctx.say(f"Sorry: {refusal.en}.", f"抱歉：{refusal.zh}。"))]
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
