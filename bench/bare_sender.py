"""The broadcast benchmark's baseline in a process of its own, as the bot is: a bare aiohttp loop
sending the given bodies to the simulator at the given concurrency. Reads a JSON job on stdin and
prints the seconds from the first send to the last answer, and the CPU seconds this process used meanwhile."""
from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main() -> None:
    job = json.load(sys.stdin)
    queue = [tuple(item) for item in job["items"]]
    async with aiohttp.ClientSession() as http:
        async def worker() -> None:
            while queue:
                user, card = queue.pop()
                # The bytes the bot sends: UTF-8 JSON, not \u escapes (aiohttp's json=).
                body = json.dumps({"touser": user, "agentid": job["agent"], "msgtype": "template_card",
                                   "template_card": card}, ensure_ascii=False).encode()
                async with http.post(job["url"], params={"access_token": job["token"]}, data=body,
                                     headers={"Content-Type": "application/json"}) as response:
                    await response.read()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(job["concurrency"])))
        print(time.perf_counter() - started, time.process_time() - cpu)


if __name__ == "__main__":
    asyncio.run(main())
