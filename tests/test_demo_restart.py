"""`partnerbot demo` started again on the same database answers every time (issue 18): the simulator's
MsgIds never repeat across restarts, as WeCom's don't, so the bot's inbox does not take a new message
for a retry of one it has already answered."""
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bot.simulator.common import MsgIds
from tests.conftest import eventually, free_port


def test_msg_ids_of_a_restarted_simulator_never_repeat() -> None:
    first = MsgIds(7_000_000_000_000_000_000)
    sent = [next(first) for _ in range(1_000)]
    time.sleep(0.01)  # a restart takes seconds
    again = MsgIds(7_000_000_000_000_000_000)
    assert len(set(sent)) == len(sent) and sent == sorted(sent)
    assert next(again) > sent[-1]
    assert sent[-1] < 2**63  # WeCom's MsgIds are 64-bit integers


async def _one_demo_lifetime(tmp_path: Path, env: dict[str, str], text: str) -> str:
    """Start the demo, send `text` as 张伟 from the sandbox, return the bot's answer, stop the demo."""
    demo = subprocess.Popen([sys.executable, "-m", "bot", "demo"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async def printed_url() -> str | None:
            line = await asyncio.to_thread(demo.stdout.readline)
            return line.split("open the sandbox: ")[1].strip() if "open the sandbox: " in line else None

        url = await eventually(printed_url, timeout=90)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}sandbox/api/send", json={"userid": "zhangwei", "text": text}) as sent:
                assert sent.status == 200

            async def reply() -> str | None:
                async with http.get(f"{url}sandbox/api/messages", params={"userid": "zhangwei"}) as r:
                    bot = [m for m in (await r.json())["messages"] if m["direction"] == "bot"]
                return bot[0]["body"]["content"] if bot else None

            return await eventually(reply, timeout=20)
    finally:
        demo.terminate()
        assert demo.wait(30) == 0


async def test_the_demo_answers_after_a_restart_on_the_same_database(tmp_path: Path) -> None:
    env = {**os.environ, "PARTNERBOT_SERVER_PORT": str(free_port()), "PARTNERBOT_SIMULATOR_PORT": str(free_port()),
           "PARTNERBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db"}
    env.pop("PARTNERBOT_CONFIG", None)
    assert "张伟，您好" in await _one_demo_lifetime(tmp_path, env, "帮助")
    # Before the fix the second lifetime's first MsgId was the first one's again: de-duplicated, no reply.
    assert "张伟，您好" in await _one_demo_lifetime(tmp_path, env, "帮助")
