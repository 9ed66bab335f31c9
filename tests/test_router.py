"""The command table and the router's parsing, language and role rules."""
import pytest

from bot.config import Config
from bot.pipeline.router import Router
from handlers.replies import Incoming, Text
from handlers.context import EVERY_ROLE, FOLLOWER, GUEST, MARKETER, ADMIN, Command, CommandTable, Context, parse_id
from handlers import COMMANDS, command_table
from store.db import Database
from tests.conftest import seed


def test_the_real_table_is_consistent() -> None:
    table = command_table()
    words = [w.lower() for c in COMMANDS for w in c.words()]
    assert len(words) == len(set(words))
    for command in COMMANDS:
        assert command.roles and command.roles <= EVERY_ROLE | {GUEST, FOLLOWER}
        assert command.help_en.startswith(command.name) and command.help_zh.startswith(command.name_zh)
    assert table.lookup("HELP") is table.lookup("帮助") is table.lookup("?")


async def _noop(ctx: Context, args: object) -> Text:
    return Text(ctx.say(f"en {args}", f"中 {args}"))


def test_duplicate_words_or_missing_help_are_rejected() -> None:
    with pytest.raises(ValueError, match="used twice"):
        CommandTable([Command("a", "甲", EVERY_ROLE, _noop, "a", "甲"), Command("b", "甲", EVERY_ROLE, _noop, "b", "甲")])
    with pytest.raises(ValueError, match="help in both languages"):
        CommandTable([Command("a", "甲", EVERY_ROLE, _noop, "a", "")])
    with pytest.raises(ValueError, match="roles"):
        CommandTable([Command("a", "甲", frozenset(), _noop, "a", "甲")])


@pytest.mark.parametrize("text, expected", [("12", 12), ("#12", 12), ("＃１２", 12), (" 7 ", 7), ("١٢", 12)])
def test_ids_with_or_without_hash(text: str, expected: int) -> None:
    assert parse_id(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "1.5", "9999999999", "#", "\U00010a40"])  # Kharosthi one: isdigit(), not int()
def test_bad_ids(text: str) -> None:
    with pytest.raises(Exception, match="not a number"):
        parse_id(text)


TABLE = CommandTable([
    Command("help", "帮助", EVERY_ROLE, _noop, "help — x", "帮助 — x"),
    Command("task", "任务", EVERY_ROLE, _noop, "task 12 — x", "任务 12 — x", parse=parse_id),
    Command("broadcast", "下发", frozenset({MARKETER, ADMIN}), _noop, "broadcast 12 all — x", "下发 12 all — x"),
])


@pytest.fixture
async def ask(sqlite_url: str):  # type: ignore[no-untyped-def]
    await seed(sqlite_url)
    db = Database(sqlite_url)
    router = Router(TABLE, Config())

    async def run(userid: str, text: str, kind: str = "text") -> str:
        async with db.session() as session:
            message = Incoming("wecom", userid, kind, text=text) if kind == "text" else \
                Incoming("wecom", userid, "card_event", event_key=text)
            [reply] = await router.dispatch(session, message)
        return reply.content

    yield run
    await db.dispose()


async def test_chinese_command_glued_to_its_number(ask) -> None:  # type: ignore[no-untyped-def]
    assert await ask("p1", "任务12") == "中 12"
    assert await ask("p1", "任务 #12") == "中 12"
    assert await ask("p1", "task　12") == "en 12"  # full-width space
    assert await ask("p1", "TASK 12") == "en 12"


async def test_bad_arguments_explain_and_show_usage(ask) -> None:  # type: ignore[no-untyped-def]
    reply = await ask("p1", "task abc")
    assert reply == "“abc” is not a number like 12.\nUsage: task 12 — x"
    assert (await ask("p1", "任务 abc")).startswith("“abc”不是编号")


async def test_roles_are_enforced_with_a_reason(ask) -> None:  # type: ignore[no-untyped-def]
    assert await ask("p1", "broadcast 1 all") == "“broadcast” is for admins and marketers only. Send help to see your commands."
    assert (await ask("p1", "下发 1 all")).startswith("“下发”仅限管理员和市场人员使用")
    assert await ask("mkt1", "broadcast") == "en None"


async def test_suggestions_only_name_commands_the_role_may_use(ask) -> None:  # type: ignore[no-untyped-def]
    assert "broadcast" not in await ask("p1", "broadcst")
    assert "Did you mean: broadcast 12 all" in await ask("mkt1", "broadcst")


async def test_card_events_route_like_typed_commands(ask) -> None:  # type: ignore[no-untyped-def]
    assert await ask("p1", "task 3", kind="card") == "en 3"
    assert await ask("p1", "任务 3", kind="card") == "中 3"
