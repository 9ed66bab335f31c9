"""The README's walk-through of the demo works as written: each row of its table is sent, as the member
it names, to a bot seeded with the demo's data (bot/demo.py), and the answer holds the text the row
promises. The README once told people to broadcast task 1, which the demo had already ended."""
import json
import re
from pathlib import Path

from bot.demo import demo_directory, seed_demo
from store.db import Database
from tests.conftest import Stack, eventually, make_config, start_stack

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `([^`]+)` \| (.+?) \| (.+?) \|$")


def walkthrough() -> list[tuple[str, str, str]]:
    """(member, what to send, a text the answer holds) for each row of the walk-through table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## A walk-through of the demo", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if match := ROW.match(line.replace("\\|", "\x00")):
            who, send, answer = (part.replace("\x00", "|") for part in match.groups())
            rows.append((who, send, re.search(r"`([^`]+)`", answer).group(1)))
    return rows


def test_the_walkthrough_table_is_found() -> None:
    rows = walkthrough()
    assert len(rows) >= 8 and {who for who, _, _ in rows} <= set(demo_directory())
    assert any(send.startswith("tap ") for _, send, _ in rows)


async def _send(stack: Stack, who: str, send: str) -> None:
    if send.startswith("tap "):  # tap `BUTTON` on the newest card
        button = re.search(r"`([^`]+)`", send).group(1)

        async def newest_card() -> dict | None:  # the broadcast's card may still be on its way
            cards = [m.body for m in stack.sim.bot_messages(who) if "button_list" in m.body]
            return cards[-1] if cards else None

        card = await eventually(newest_card, timeout=15)
        key = next(b["key"] for b in card["button_list"] if b["text"] == button)
        await stack.sim.click(who, key, card["task_id"])
    else:
        await stack.sim.send_text(who, send.strip("`"))


async def test_the_readmes_walkthrough_works_on_the_demo(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        async with db.session() as session:
            await seed_demo(session)
    finally:
        await db.dispose()
    stack = await start_stack(make_config(sqlite_url), directory=demo_directory())
    try:
        for who, send, promised in walkthrough():
            before = len(stack.sim.bot_messages(who))
            await _send(stack, who, send)

            async def answered() -> bool:
                return any(promised in json.dumps(m.body, ensure_ascii=False)
                           for m in stack.sim.bot_messages(who)[before:])

            try:
                await eventually(answered, timeout=15)
            except AssertionError:
                got = [m.body for m in stack.sim.bot_messages(who)[before:]]
                raise AssertionError(f"as {who}, {send} got no answer holding {promised!r}: {got}") from None
    finally:
        await stack.stop()
