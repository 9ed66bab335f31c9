"""A request that finds the database or Redis away is answered with a friendly 503 page (and a
Retry-After), not aiohttp's bare 500; a bug is still a 500. Real failures: a PostgreSQL and a Redis
address where nothing listens."""
from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from sqlalchemy import text

from bot.logs import request_ids
from bot.web.links import unavailable_page
from store.db import Database

NOBODY = "127.0.0.1:1"  # a port where nothing listens: connections are refused at once


async def query_a_dead_database(_request: web.Request) -> web.Response:
    db = Database(f"postgresql+asyncpg://root@{NOBODY}/test")
    try:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    return web.Response(text="never")


async def ask_a_dead_redis(_request: web.Request) -> web.Response:
    redis = Redis.from_url(f"redis://{NOBODY}/0")
    try:
        await redis.get("x")
    finally:
        await redis.aclose()
    return web.Response(text="never")


async def bug(_request: web.Request) -> web.Response:
    raise ValueError("a bug, not an outage")


async def fine(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def client():  # type: ignore[no-untyped-def]
    app = web.Application(middlewares=[request_ids(unavailable_page)])
    app.add_routes([web.get("/db", query_a_dead_database), web.get("/redis", ask_a_dead_redis),
                    web.get("/bug", bug), web.get("/fine", fine)])
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/db", "/redis"])
async def test_an_outage_is_a_friendly_503(client: TestClient, path: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        response = await client.get(path, headers={"X-Request-Id": "req-1"})
        body = await response.text()
    assert response.status == 503 and response.headers["Retry-After"] == "5"
    assert "服务繁忙" in body and "Traceback" not in body and response.content_type == "text/html"
    assert response.headers["X-Request-Id"] == "req-1"
    [line] = [r for r in caplog.records if "did not answer" in r.getMessage()]
    assert path in line.getMessage() and line.exc_info is None  # one line, no traceback


async def test_a_bug_is_still_a_500_and_a_healthy_request_untouched(client: TestClient) -> None:
    assert (await client.get("/bug")).status == 500
    response = await client.get("/fine")
    assert response.status == 200 and await response.text() == "ok" and len(response.headers["X-Request-Id"]) == 12
