"""The content library through the admin API: create, list, edit, with the chat's rules and JSON errors."""
import aiohttp

from tests.conftest import ADMIN_TOKEN, Stack, admin_http


async def test_admin_api_creates_lists_and_edits_content(api_stack: Stack) -> None:
    stack = api_stack
    async with admin_http(stack) as http:
        async with http.post("/api/content", json={"title": "Case study", "url": "https://brand.example/case",
                                                   "tags": ["case"], "audience": "region:华南"}) as response:
            assert response.status == 201
            item = await response.json()
        assert (item["kind"], item["status"], item["tags"], item["audience"]) == ("link", "published", ["case"], "region:华南")
        async with http.post("/api/content", json={"kind": "script", "title": "Hi", "body": "Call {phone}"}) as response:
            assert response.status == 422 and (await response.json())["field"] == "body"
        async with http.post("/api/content", json={"title": "X", "url": "javascript:alert(1)"}) as response:
            assert response.status == 422 and (await response.json())["field"] == "url"
        async with http.post("/api/content", json={"title": "X", "colour": "red"}) as response:
            assert response.status == 400
        async with http.get("/api/content") as response:
            assert [c["id"] for c in (await response.json())["content"]] == [item["id"]]
        assert f"#{item['id']}" in (await stack.ask("p2", "content"))[0]
        assert (await stack.ask("p1", "content"))[0] == "No content for you yet."
        async with http.patch(f"/api/content/{item['id']}", json={"status": "retired", "tags": ["a", "b"]}) as response:
            assert response.status == 200
            changed = await response.json()
        assert (changed["status"], changed["tags"]) == ("retired", ["a", "b"])
        async with http.patch(f"/api/content/{item['id']}", json={"audience": "partner:Nobody"}) as response:
            assert response.status == 422 and (await response.json())["field"] == "audience"
        async with http.patch(f"/api/content/{item['id']}", json={"expires_at": "2020-01-01T00:00:00+08:00"}) as response:
            assert response.status == 422
        async with http.patch("/api/content/999", json={"status": "published"}) as response:
            assert response.status == 404
    async with aiohttp.ClientSession(base_url=stack.bot_url) as anonymous:
        async with anonymous.get("/api/content", headers={"Authorization": "Bearer " + ADMIN_TOKEN[::-1]}) as response:
            assert response.status == 401
