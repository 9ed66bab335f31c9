"""The admin HTTP API: bearer token, task create/edit/end, validation, nothing half-written."""

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.app import DB
from store.models import Task
from tests.conftest import ADMIN_TOKEN, Stack



async def test_requests_without_the_right_token_are_refused(api) -> None:  # type: ignore[no-untyped-def]
    stack, _ = api
    async with aiohttp.ClientSession(base_url=stack.bot_url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN},
                        {"Authorization": f"Basic {ADMIN_TOKEN}"}):
            async with anonymous.post("/api/tasks", json={"title": "T", "url": "https://x.example"},
                                      headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
    async with stack.bot[DB].session() as session:
        assert await session.scalar(select(func.count()).select_from(Task)) == 0


async def test_disabled_without_a_configured_token(stack: Stack) -> None:
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.get("/api/tasks", headers={"Authorization": "Bearer "}) as response:
            assert response.status == 503 and "disabled" in (await response.json())["error"]


async def test_create_edit_and_end_a_task(api) -> None:  # type: ignore[no-untyped-def]
    _, http = api
    async with http.post("/api/tasks", json={"title": "双十二", "url": "https://brand.example/d12",
                                             "description": "分享文案", "deadline": "2030-12-12T18:00:00+08:00"}) as r:
        assert r.status == 201
        task = await r.json()
    assert (task["title"], task["status"], task["deadline"]) == ("双十二", "draft", "2030-12-12T10:00:00+00:00")
    assert task["deliveries"] == {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "waiting": 0}
    async with http.patch(f"/api/tasks/{task['id']}", json={"title": "双十二 大促", "status": "active"}) as r:
        assert r.status == 200 and (await r.json())["title"] == "双十二 大促"
    async with http.post(f"/api/tasks/{task['id']}/end") as r:
        assert (await r.json())["status"] == "ended"
    async with http.patch(f"/api/tasks/{task['id']}", json={"status": "active"}) as r:
        assert r.status == 422 and "cannot go from ended back to active" in (await r.json())["error"]
    async with http.get("/api/tasks") as r:
        assert [t["id"] for t in (await r.json())["tasks"]] == [task["id"]]


@pytest.mark.parametrize("body, status, field", [
    ({"title": "", "url": "https://x.example"}, 422, "title"),
    ({"title": "T", "url": "javascript:alert(1)"}, 422, "url"),
    ({"title": "T", "url": "https://x.example", "deadline": "tomorrow"}, 422, "deadline"),
    ({"title": "T", "url": "https://x.example", "deadline": "2030-01-01T00:00:00"}, 422, "deadline"),
    ({"title": "T", "url": "https://x.example", "deadline": "2001-01-01T00:00:00+00:00"}, 422, "deadline"),
    ({"title": "T", "url": "https://x.example", "status": "ended"}, 422, "status"),
    ({"title": "T", "url": "https://x.example", "template": "nope"}, 422, "template"),
    ({"title": "T", "url": "https://x.example", "owner": "me"}, 400, "owner"),
    ({"title": 5, "url": "https://x.example"}, 400, None),
])
async def test_bad_task_bodies(api, body: dict, status: int, field: str | None) -> None:  # type: ignore[no-untyped-def]
    stack, http = api
    async with http.post("/api/tasks", json=body) as r:
        assert r.status == status
        assert (await r.json()).get("field") == field
    async with stack.bot[DB].session() as session:
        assert await session.scalar(select(func.count()).select_from(Task)) == 0


async def test_task_cost_for_roi(api) -> None:  # type: ignore[no-untyped-def]
    _, http = api
    async with http.post("/api/tasks", json={"title": "T", "url": "https://x.example", "cost": 5000}) as r:
        task = await r.json()
    assert task["cost"] == "5000.00"
    async with http.patch(f"/api/tasks/{task['id']}", json={"cost": "1,250.5"}) as r:
        assert (await r.json())["cost"] == "1250.50"
    for bad, status in ((-1, 422), ("lots", 422), (True, 400), (1e12, 422), ([5], 400)):
        async with http.patch(f"/api/tasks/{task['id']}", json={"cost": bad}) as r:
            assert r.status == status, bad
    async with http.patch(f"/api/tasks/{task['id']}", json={"cost": None}) as r:
        assert (await r.json())["cost"] is None


async def test_a_failed_edit_changes_nothing(api) -> None:  # type: ignore[no-untyped-def]
    _, http = api
    async with http.post("/api/tasks", json={"title": "Keep", "url": "https://x.example"}) as r:
        task_id = (await r.json())["id"]
    async with http.patch(f"/api/tasks/{task_id}", json={"status": "active", "url": "ftp://nope"}) as r:
        assert r.status == 422
    async with http.get(f"/api/tasks/{task_id}") as r:
        task = await r.json()
    assert (task["status"], task["url"]) == ("draft", "https://x.example")
    # "¹" is isdigit() but not int(): it was a 500.
    for path in ("/api/tasks/999", "/api/tasks/abc", "/api/tasks/99999999999", "/api/tasks/¹", "/api/leads/²",
                 "/api/tasks/\U00010a40"):
        async with http.get(path) as r:
            assert r.status == 404, path
    async with http.post("/api/tasks", data=b"{not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400


async def test_leads_through_the_api(api) -> None:  # type: ignore[no-untyped-def]
    stack, http = api
    body = {"name": "王总", "company": "甲公司", "phone": "+86 139 0000 0009", "pool": "星河科技", "source": "expo"}
    async with http.post("/api/leads", json=body) as r:
        assert r.status == 201
        lead = await r.json()
    assert (lead["phone"], lead["status"], lead["source"], lead["history"]) == ("13900000009", "new", "expo", [])
    async with http.post("/api/leads", json=body) as r:
        assert r.status == 409
    for bad, status, field in (({**body, "phone": "123"}, 422, "phone"), ({**body, "pool": "Nobody"}, 422, "pool"),
                               ({**body, "owner": "x"}, 400, "owner"), ({**body, "name": ""}, 422, "name")):
        async with http.post("/api/leads", json=bad) as r:
            assert (r.status, (await r.json()).get("field")) == (status, field)
    await stack.ask("p1", f"claim {lead['id']}")
    async with http.get(f"/api/leads/{lead['id']}") as r:
        history = (await r.json())["history"]
    assert [e["kind"] for e in history] == ["created", "claimed"]
    async with http.get("/api/leads/999") as r:
        assert r.status == 404


async def test_assignment_rules_give_new_pool_leads_out_in_turn(api) -> None:  # type: ignore[no-untyped-def]
    stack, http = api
    from tests.conftest import seed
    from store.members import MemberRow
    await seed(stack.config.database.url, [MemberRow(0, "p3", "Wu", "partner", "星河科技", "华东", ())])
    async with http.post("/api/assignment-rules", json={"partner": "星河科技", "region": "上海"}) as r:
        assert r.status == 201
        rule = await r.json()
    async with http.post("/api/assignment-rules", json={"partner": "Nobody"}) as r:
        assert r.status == 422
    owners = []
    for i in range(3):
        async with http.post("/api/leads", json={"name": f"客户{i}", "phone": f"1390000010{i}", "region": "上海"}) as r:
            owners.append((await r.json())["owner_id"])
    async with http.post("/api/leads", json={"name": "外地", "phone": "13900000199", "region": "北京"}) as r:
        assert (await r.json())["owner_id"] is None  # no rule matches: waits in the pool
    async with stack.bot[DB].session() as session:
        from store.members import get_member
        p1, p3 = (await get_member(session, "p1")).id, (await get_member(session, "p3")).id
    assert owners == [p1, p3, p1]  # round robin among 星河科技's members
    async with http.get(f"/api/leads/{1}") as r:
        assert [e["kind"] for e in (await r.json())["history"]] == ["created", "assigned"]
    async with http.delete(f"/api/assignment-rules/{rule['id']}") as r:
        assert r.status == 200
    async with http.post("/api/leads", json={"name": "晚到", "phone": "13900000198", "region": "上海"}) as r:
        assert (await r.json())["owner_id"] is None


async def test_moving_a_lead_between_levels(api) -> None:  # type: ignore[no-untyped-def]
    stack, http = api
    async with http.post("/api/leads", json={"name": "王总", "phone": "13900000301"}) as r:
        lead_id = (await r.json())["id"]
    async with http.post(f"/api/leads/{lead_id}/assign", json={"pool": "星河科技"}) as r:
        assert (await r.json())["pool_partner_id"] is not None
    [reply] = await stack.ask("p2", f"claim {lead_id}")  # Blue Ocean cannot see 星河科技's pool
    assert reply == f"Sorry: there is no lead #{lead_id} in your pools."
    async with http.post(f"/api/leads/{lead_id}/assign", json={"member": "p2"}) as r:
        moved = await r.json()
    [mine] = await stack.ask("p2", "leads")
    assert f"#{lead_id} 王总" in mine and "13900000301" in mine
    assert [e["kind"] for e in moved["history"]] == ["created", "assigned", "assigned"]
    for body, status in (({"member": "admin1"}, 422), ({"pool": "Nobody"}, 422), ({"x": "y"}, 400),
                         ({"pool": "", "member": "p1"}, 400)):
        async with http.post(f"/api/leads/{lead_id}/assign", json=body) as r:
            assert r.status == status
    async with http.post(f"/api/leads/{lead_id}/assign", json={"pool": ""}) as r:
        back = await r.json()
    assert (back["owner_id"], back["pool_partner_id"], back["status"]) == (None, None, "new")


async def test_pool_rules_per_pool(api) -> None:  # type: ignore[no-untyped-def]
    stack, http = api
    async with http.get("/api/pools") as r:
        pools = {p["pool"]: p for p in (await r.json())["pools"]}
    assert set(pools) == {"public", "星河科技", "Blue Ocean"}
    assert pools["星河科技"]["rules"]["max_held"] == stack.config.pool.max_held and pools["星河科技"]["overrides"] == {}
    async with http.patch("/api/pools/星河科技/rules", json={"max_held": 5, "idle_days": 3}) as r:
        assert r.status == 200
        changed = await r.json()
    assert changed["overrides"] == {"max_held": 5, "idle_days": 3}
    assert changed["rules"]["max_held"] == 5 and changed["rules"]["cooldown_days"] == stack.config.pool.cooldown_days
    async with http.patch("/api/pools/星河科技/rules", json={"idle_days": None}) as r:
        assert (await r.json())["overrides"] == {"max_held": 5}  # null: back to the config value
    async with http.get("/api/pools") as r:
        pools = {p["pool"]: p for p in (await r.json())["pools"]}
    assert pools["public"]["overrides"] == {} and pools["Blue Ocean"]["rules"]["max_held"] == stack.config.pool.max_held


@pytest.mark.parametrize("path, body, status, field", [
    ("/api/pools/public/rules", {"max_held": -1}, 422, "max_held"),
    ("/api/pools/public/rules", {"max_held": True}, 422, "max_held"),
    ("/api/pools/public/rules", {"idle_days": 0}, 422, "idle_days"),
    ("/api/pools/public/rules", {"idle_days": "7"}, 422, "idle_days"),
    ("/api/pools/public/rules", {"cooldown_days": 10**9}, 422, "cooldown_days"),
    ("/api/pools/public/rules", {"return_reason_required": 1}, 422, "return_reason_required"),
    ("/api/pools/public/rules", {"max_held": 5, "colour": "red"}, 422, "colour"),
    ("/api/pools/public/rules", {}, 400, None),
    ("/api/pools/public/rules", [1], 400, None),
    ("/api/pools/Nobody/rules", {"max_held": 5}, 404, None),
])
async def test_bad_pool_rules(api, path: str, body: object, status: int, field: str | None) -> None:  # type: ignore[no-untyped-def]
    _, http = api
    async with http.patch(path, json=body) as r:
        assert r.status == status
        assert (await r.json()).get("field") == field
    async with http.get("/api/pools") as r:
        assert all(p["overrides"] == {} for p in (await r.json())["pools"])  # nothing half-written
