"""Request ids: every HTTP answer carries one (a sane one from the proxy is kept), and log lines
carry the id of the request or inbox message they belong to, as text or JSON."""
import json
import logging

import aiohttp

from bot.logs import REQUEST_ID, JsonFormatter, _RequestIdFilter
from tests.conftest import Stack


async def test_answers_carry_a_request_id(stack: Stack) -> None:
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.get("/healthz") as r:
            made = r.headers["X-Request-Id"]
        async with http.get("/healthz", headers={"X-Request-Id": "lb-1234.abc"}) as r:
            assert r.headers["X-Request-Id"] == "lb-1234.abc"
        async with http.get("/t/nothing", headers={"X-Request-Id": "bad id\twith <stuff>"}) as r:
            assert r.headers["X-Request-Id"] not in ("bad id\twith <stuff>", made) and len(r.headers["X-Request-Id"]) == 12
    assert len(made) == 12 and int(made, 16) >= 0


def test_log_lines_name_their_request_as_text_or_json() -> None:
    record = logging.LogRecord("bot.inbox", logging.WARNING, __file__, 1, "inbox row %d: %s", (7, "slow"), None)
    token = REQUEST_ID.set("in-7")
    try:
        _RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["request_id"], entry["level"], entry["message"]) == ("in-7", "WARNING", "inbox row 7: slow")
    text = logging.Formatter("%(levelname)s [%(request_id)s]: %(message)s").format(record)
    assert text == "WARNING [in-7]: inbox row 7: slow"
