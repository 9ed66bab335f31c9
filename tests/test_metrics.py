"""/metrics in Prometheus text format: the counters move with real traffic; guarded by the admin token."""
import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_TOKEN, Stack
from tests.test_links import task_for_p1, link_code


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(stack: Stack, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.get("/metrics", headers=headers or {}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            return samples(await r.text())


async def test_counters_follow_callbacks_replies_redirects_and_claims(stack: Stack) -> None:
    before = await scrape(stack)
    await task_for_p1(stack)
    code = await link_code(stack)
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.get(f"/t/{code}", allow_redirects=False) as r:
            assert r.status == 302
        async with http.get("/t/nosuchcode", allow_redirects=False) as r:
            assert r.status == 404
    await stack.ask("p1", "claim 999")
    after = await scrape(stack)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("partnerbot_callbacks_total", result="accepted") >= 4  # newtask, broadcast, link, claim
    assert grew("partnerbot_commands_total", result="answered") >= 4
    assert grew("partnerbot_redirects_total", result="redirected") == 1
    assert grew("partnerbot_redirects_total", result="not_found") == 1
    assert grew("partnerbot_command_outcomes_total", command="claim", outcome="refused") == 1
    assert grew("partnerbot_command_outcomes_total", command="newtask", outcome="done") == 1
    # Each message's first reply in the callback's answer, the others (the broadcast card) by message/send.
    assert grew("partnerbot_outbox_messages_total", result="sent") + \
        grew("partnerbot_outbox_messages_total", result="passive") >= 4
    assert grew("partnerbot_replies_total", channel="wecom", how="passive") >= 3
    assert grew("partnerbot_replies_total", channel="wecom", how="passive") == \
        grew("partnerbot_outbox_messages_total", result="passive")
    assert grew("partnerbot_reply_seconds_count") >= 4
    assert ("partnerbot_outbox_backlog", ()) in after and ("partnerbot_click_buffer_lag", ()) in after


async def test_metrics_need_the_admin_token_when_one_is_set(api_stack: Stack) -> None:
    stack = api_stack
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with http.get("/metrics", headers=headers) as r:
                assert r.status == 401
    assert await scrape(stack, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.get("/healthz") as r:
            assert r.status == 200 and (await r.json())["database"] == "ok"

