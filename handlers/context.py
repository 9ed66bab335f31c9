"""What every handler works with: the context of one message, the command table, roles and the
errors that become polite replies. The router (bot/pipeline/router.py) fills these in; handlers import
nothing from bot/.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from handlers.replies import Reply
from store.models import Member, utcnow
from store.pool_rules import RuleBook, rule_book
from store.text import ascii_digits, whole_number

if TYPE_CHECKING:  # the deployment's settings; handlers read them, never import bot at run time
    from sqlalchemy.ext.asyncio import AsyncSession  # handlers pass the session on to store, never query

    from bot.config import Config

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


@dataclass(frozen=True)
class MassMessage:
    """What WeCom said to a customer mass message (`forward N`): "created" (msgid, how many customers
    it can reach once the member confirms), "no_permission", "no_customers" or "unavailable"; asked
    only how many customers the member has, "ready" (how many)."""

    outcome: str
    msgid: str = ""
    reachable: int = 0


@dataclass(frozen=True)
class MomentState:
    """A Moments (客户朋友圈) task as WeCom knows it: its moment_id ("" when the task failed) and
    whether the member published it."""

    moment_id: str
    published: bool = False


class CustomerContact(Protocol):
    """The member's WeCom customers (客户联系), as bot/channels/customers.py reaches them. Only
    `customers` is safe to call from a handler (it only reads); the rest create things in WeCom and are
    called once, after the forward was committed (bot/forwarding.py)."""

    async def customers(self, sender: str) -> MassMessage: ...

    async def mass_message(self, sender: str, text: str, title: str, description: str, url: str) -> MassMessage: ...

    async def reached(self, msgid: str, sender: str) -> int | None: ...

    async def moment(self, sender: str, text: str, title: str, description: str, url: str) -> str | None: ...

    async def moment_state(self, jobid: str, moment_id: str | None, sender: str) -> MomentState | None: ...


@dataclass(frozen=True)
class Download:
    """What fetching an image or file a member sent gave: "ok" (its bytes and the platform's file name),
    "expired" (the platform no longer has it: WeCom's 40007 after 3 days), "too_large" (`size`: at least
    this many bytes, more than asked for) or "unavailable" (the platform could not be reached)."""

    outcome: str
    data: bytes = b""
    filename: str = ""
    size: int = 0


class MediaDownloads(Protocol):
    """Images and files members send to the bot, as bot/channels/downloads.py fetches them (media/get)."""

    async def fetch(self, media_id: str, max_bytes: int) -> Download: ...


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
    # WeCom customer contact, when the deployment has WeCom (None otherwise).
    customers: CustomerContact | None = None
    # The inbox row of the chat message being answered (None outside the inbox): what makes a side
    # effect in another system (a `forward N`) happen at most once however often the message is processed.
    message_id: int | None = None
    # What members send to the bot (images, files), when the deployment has WeCom (None otherwise).
    media: MediaDownloads | None = None
    _rule_book: RuleBook | None = field(default=None, init=False, repr=False)

    def say(self, en: str, zh: str) -> str:
        return zh if self.lang == "zh" else en

    async def pool_rules(self) -> RuleBook:
        """The rules of every pool, read from the database at most once per message."""
        if self._rule_book is None:
            self._rule_book = await rule_book(self.session, self.config.pool_rules)
        return self._rule_book

    def may_use(self, command_name: str) -> bool:
        """Whether a reply may point this person at a command: only at ones their role can run."""
        command = self.commands.lookup(command_name)
        return command is not None and self.member.role in command.roles


Handler = Callable[[Context, Any], Awaitable[Reply | Sequence[Reply]]]


def no_args(_text: str) -> None:
    return None


def parse_id(text: str) -> int:
    """`12`, `#12`, `＃１２` all mean 12."""
    number = whole_number(ascii_digits(text).strip().removeprefix("#"), 9)
    if number is None:
        raise ArgError(f"“{shorten(text)}” is not a number like 12", f"“{shorten(text)}”不是编号，例如 12")
    return number


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
