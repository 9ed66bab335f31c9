"""Request ids: every HTTP answer carries one (a sane one from the proxy is kept), and log lines
carry the id of the request or inbox message they belong to, as text or JSON."""
import json
import logging
import re

import aiohttp

from bot.logs import REQUEST_ID, JsonFormatter, _RequestIdFilter
from tests.conftest import Stack, admin_http


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
    record = logging.LogRecord("bot.pipeline.inbox", logging.WARNING, __file__, 1, "inbox row %d: %s", (7, "slow"), None)
    token = REQUEST_ID.set("in-7")
    try:
        _RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["request_id"], entry["level"], entry["message"]) == ("in-7", "WARNING", "inbox row 7: slow")
    text = logging.Formatter("%(levelname)s [%(request_id)s]: %(message)s").format(record)
    assert text == "WARNING [in-7]: inbox row 7: slow"


async def test_no_sql_parameters_reach_the_logs_even_at_debug(api_stack: Stack, caplog) -> None:  # type: ignore[no-untyped-def]
    """aiosqlite printed every statement with its parameters at DEBUG: full phones, invite codes."""
    caplog.set_level(logging.DEBUG)  # what [log] level = "DEBUG" does
    [text, _poster] = await api_stack.ask("admin1", "invite 星河科技 7 5", expect=2)
    code = re.search(r"[:：] ?([A-Z2-9]{6,})", text).group(1)  # type: ignore[union-attr]
    async with admin_http(api_stack) as http:
        async with http.post("/api/leads", json={"name": "王总", "company": "甲公司", "phone": "13900000009"}) as r:
            assert r.status == 201
        async with http.get("/api/leads/1") as r:
            assert (await r.json())["phone"] == "13900000009"
    logging.getLogger("bot.probe").debug("probe")  # DEBUG lines really were captured
    lines = [r.getMessage() for r in caplog.records]
    assert "probe" in lines, sorted({r.name for r in caplog.records})
    assert not [line for line in lines if "13900000009" in line or code in line]


async def test_a_refused_admin_request_logs_no_ip_address(api_stack: Stack, caplog) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession(base_url=api_stack.bot_url) as http:
        async with http.get("/api/tasks", headers={"Authorization": "Bearer wrong-token-123"}) as r:
            assert r.status == 401
    [refused] = [r.getMessage() for r in caplog.records if "refused a request" in r.getMessage()]
    assert "127.0.0.1" not in refused and re.search(r"client [0-9a-f]{16}$", refused), refused
