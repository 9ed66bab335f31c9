"""Image and file content (issue 16, second increment), through the admin API, the simulator and HTTP:
an uploaded image comes back to a partner with their QR code stamped on it (decoded here); a file's
tracked download page /d/<code> serves the bytes and counts a click; a gated file shows the sign-up form,
the lead lands with the partner whose link it was and the download follows; oversize and wrong-type
uploads and retired items get clear answers."""
import io
import re

import aiohttp
import zxingcpp
from PIL import Image
from sqlalchemy import select

from bot.app import CLICKS, DB
from store.models import Click, Lead, Member, Share, TrackedLink
from tests.conftest import Stack, eventually
from tests.test_landing import GOOD
from tests.test_links import BROWSER

PDF = b"%PDF-1.4\n" + b"whitepaper " * 2000 + b"\n%%EOF\n"


def picture(fmt: str = "PNG", size: tuple[int, int] = (900, 600)) -> bytes:
    image = Image.new("RGB", size, "#f3d9a4")
    for x in range(0, size[0], 60):  # something to draw the code over
        image.paste("#2a4d8f", (x, 0, x + 20, size[1]))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


async def upload(http: aiohttp.ClientSession, kind: str, title: str, filename: str, data: bytes,
                 content_type: str = "application/octet-stream", **fields: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    for name, value in {"kind": kind, "title": title, **fields}.items():
        form.add_field(name, value)
    form.add_field("file", data, filename=filename, content_type=content_type)
    async with http.post("/api/content", data=form) as response:
        await response.read()
        return response


async def created(http: aiohttp.ClientSession, *args: object, **fields: str) -> dict:
    async with http.post("/api/content", data=_form(*args, **fields)) as response:
        body = await response.json()
        assert response.status == 201, body
        return body


def _form(kind: str, title: str, filename: str, data: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in {"kind": kind, "title": title, **fields}.items():
        form.add_field(name, value)
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return form


def download_code(text: str) -> str:
    match = re.search(r"/d/([A-Za-z0-9_-]+)", text)
    assert match, text
    return match.group(1)


async def clicks_of(stack: Stack, code: str) -> list[Click]:
    await stack.bot[CLICKS].flush_all()
    async with stack.bot[DB].session() as session:
        link = (await session.scalars(select(TrackedLink).where(TrackedLink.code == code))).one()
        return list(await session.scalars(select(Click).where(Click.link_id == link.id)))


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"User-Agent": BROWSER}, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_an_image_copy_carries_the_partners_qr_code(api: tuple[Stack, aiohttp.ClientSession]) -> None:
    stack, http = api
    item = await created(http, "image", "Case study: 星河制造", "case.jpg", picture("JPEG"), tags="case")
    assert (item["kind"], item["file"]["content_type"], item["tags"]) == ("image", "image/jpeg", ["case"])
    await stack.ask("p1", f"素材 {item['id']}", expect=2)
    image, note = stack.sim.bot_messages("p1")[-2:]
    assert image.msgtype == "image" and "专属图片" in note.body["content"]
    copy = Image.open(io.BytesIO(stack.sim.media[image.body["media_id"]][0]))
    assert copy.size == (960, 640)  # enlarged so the shortest side is 640: the code scans
    [code] = [b.text for b in zxingcpp.read_barcodes(copy)]
    async with stack.bot[DB].session() as session:
        link = (await session.scalars(select(TrackedLink).where(TrackedLink.content_id == item["id"]))).one()
        p1 = (await session.scalars(select(Member).where(Member.userid == "p1"))).one()
        assert link.member_id == p1.id
        assert [s.member_id for s in await session.scalars(select(Share).where(Share.content_id == item["id"]))] == [p1.id]
    assert code == f"{stack.config.server.public_base_url}/t/{link.code}"
    # Taking it again: the cached copy and WeCom's media id are reused (no second upload).
    uploads = stack.sim.api_calls["media/upload"]
    await stack.ask("p1", f"content {item['id']}", expect=2)
    assert stack.sim.api_calls["media/upload"] == uploads
    # Another partner's copy carries their own code.
    await stack.ask("p2", f"content {item['id']}", expect=2)
    image2 = stack.sim.bot_messages("p2")[-2]
    [code2] = [b.text for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(stack.sim.media[image2.body["media_id"]][0])))]
    assert code2 != code and "/t/" in code2


async def test_a_file_copy_downloads_and_counts_a_click(api: tuple[Stack, aiohttp.ClientSession]) -> None:
    stack, http = api
    item = await created(http, "file", "2026 白皮书", "白皮书 2026.pdf", PDF)
    assert item["file"] == {"filename": "白皮书 2026.pdf", "content_type": "application/pdf", "size": len(PDF)}
    _, text = await stack.ask("p1", f"素材 {item['id']}", expect=2)
    card = stack.sim.bot_messages("p1")[-2]
    code = download_code(text)
    assert card.body["card_action"]["url"] == f"{stack.config.server.public_base_url}/d/{code}"
    async with browser() as phone:
        async with phone.get(f"{stack.bot_url}/d/{code}") as response:
            assert response.status == 200 and await response.read() == PDF
            assert response.headers["Content-Type"] == "application/pdf"
            assert response.headers["Content-Disposition"].startswith("attachment;")
            assert "filename*=UTF-8''%E7%99%BD%E7%9A%AE%E4%B9%A6%202026.pdf" in response.headers["Content-Disposition"]
        # The tracked link of a file goes to its download page.
        async with phone.get(f"{stack.bot_url}/t/{code}", allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"] == f"/d/{code}"
    clicks = await eventually(lambda: clicks_of(stack, code))
    assert len(clicks) == 1 and clicks[0].is_unique and not clicks[0].is_bot


async def test_a_gated_file_gives_the_form_first_then_the_download(api: tuple[Stack, aiohttp.ClientSession]) -> None:
    stack, http = api
    item = await created(http, "file", "Gated whitepaper", "wp.pdf", PDF, gated="true")
    assert item["gated"] is True
    _, text = await stack.ask("p2", f"content {item['id']}", expect=2)
    code = download_code(text)
    async with browser() as visitor:
        async with visitor.get(f"{stack.bot_url}/d/{code}") as response:
            page = await response.text()
            assert response.status == 200 and response.content_type == "text/html" and PDF not in page.encode()
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        # Without a valid key there is no file: a made-up or altered key is refused.
        for key in ("9999999999.00000000000000000000000000000000", "x"):
            async with visitor.get(f"{stack.bot_url}/d/{code}", params={"k": key}) as response:
                assert response.status == 403
        async with visitor.post(f"{stack.bot_url}/d/{code}", data={**GOOD, "csrf": token}) as response:
            done = await response.text()
            assert response.status == 200 and "提交成功" in done
        href = re.search(r'id="download" href="([^"]+)"', done).group(1).replace("&amp;", "&")
        assert href.startswith(f"/d/{code}?k=")
        async with visitor.get(f"{stack.bot_url}{href}") as response:
            assert response.status == 200 and await response.read() == PDF
            assert response.headers["Content-Disposition"] == 'attachment; filename="wp.pdf"; filename*=UTF-8\'\'wp.pdf'
    async with stack.bot[DB].session() as session:
        [lead] = list(await session.scalars(select(Lead)))
        p2 = (await session.scalars(select(Member).where(Member.userid == "p2"))).one()
        link = (await session.scalars(select(TrackedLink).where(TrackedLink.code == code))).one()
    assert (lead.owner_id, lead.link_id, lead.task_id) == (p2.id, link.id, None)
    notice = (await stack.sim.wait_for_bot_messages("p2", 3))[-1]
    assert f"素材 #{item['id']}" in notice.body["content"]
    assert len(await eventually(lambda: clicks_of(stack, code))) == 1  # the visit, not the download again


async def test_bad_uploads_get_clear_answers(api: tuple[Stack, aiohttp.ClientSession]) -> None:
    stack, http = api
    big = b"%PDF-1.4\n" + bytes(21 * 1024 * 1024)
    response = await upload(http, "file", "Too big", "big.pdf", big)
    assert response.status == 413
    async with http.post("/api/content", data=_form("file", "Too big", "big.pdf", big)) as response:
        body = await response.json()
        assert response.status == 413 and "at most 20 MB" in body["error"] and body["field"] == "file"
    # Sent in chunks without a length: the stream is cut off past 20 MB, with the same answer.
    boundary = "pbboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nfile\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nChunked\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n").encode()

    async def chunks():  # type: ignore[no-untyped-def]
        yield head + b"%PDF-1.4\n"
        for _ in range(21):
            yield bytes(1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    async with http.post("/api/content", data=chunks(),
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}) as response:
        body = await response.json()
        assert response.status == 413 and "the file is 21.0 MB; at most 20 MB" in body["error"]
    for kind, name, data, says in (
            ("image", "a.gif", b"GIF89a" + bytes(100), "PNG or JPEG"),
            ("image", "a.png", b"%PDF-1.4 not a picture", "PNG or JPEG"),
            ("file", "run.exe", b"MZ" + bytes(100), "PDF"),
            ("file", "fake.pdf", b"PK\x03\x04 a zip calling itself a pdf", "PDF"),
            ("file", "empty.pdf", b"", "empty")):
        async with http.post("/api/content", data=_form(kind, "Wrong", name, data)) as response:
            body = await response.json()
            assert response.status == 422 and says in body["error"] and body["field"] == "file", (name, body)
    async with http.post("/api/content", data=_form("image", "Gated picture", "a.png", picture(), gated="yes")) as response:
        assert response.status == 422 and (await response.json())["field"] == "gated"
    async with http.post("/api/content", json={"kind": "file", "title": "JSON file"}) as response:
        assert response.status == 422 and "multipart" in (await response.json())["error"]
    async with http.get("/api/content") as response:
        assert (await response.json())["content"] == []


async def test_a_retired_items_download_link_answers_410(api: tuple[Stack, aiohttp.ClientSession]) -> None:
    stack, http = api
    item = await created(http, "file", "Old deck", "deck.pptx", b"PK\x03\x04" + bytes(500))
    _, text = await stack.ask("p1", f"content {item['id']}", expect=2)
    code = download_code(text)
    async with browser() as phone:
        async with phone.get(f"{stack.bot_url}/d/{code}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith(
                "application/vnd.openxmlformats-officedocument.presentationml.presentation")
        async with http.patch(f"/api/content/{item['id']}", json={"status": "retired"}) as response:
            assert response.status == 200
        async with phone.get(f"{stack.bot_url}/d/{code}") as response:
            assert response.status == 410
        async with phone.get(f"{stack.bot_url}/d/nosuchcode1") as response:
            assert response.status == 404
    [refused] = await stack.ask("p1", f"content {item['id']}")
    assert "retired" in refused
    [details] = await stack.ask("mkt1", f"content {item['id']}")
    assert "File: deck.pptx (1 KB)." in details


async def test_the_bytes_round_trip_on_each_backend(database_url: str) -> None:
    """20 MB exactly is kept and read back whole (PostgreSQL bytea, SQLite blob); retiring hides it."""
    from store import content_files
    from store.content import update_content
    from store.db import Database

    data = b"%PDF-1.7\n" + bytes(range(256)) * (content_files.MAX_BYTES // 256 - 1)
    data += bytes(content_files.MAX_BYTES - len(data))
    db = Database(database_url)
    try:
        async with db.session() as session:
            item = await content_files.create_file_content(session, kind="file", title="Exactly 20 MB",
                                                           filename="max.pdf", data=data, creator=None)
        async with db.session() as session:
            info, stored = await content_files.live_file(session, item.id)
            assert (info.size, info.content_type, stored == data) == (len(data), "application/pdf", True)
            await update_content(session, await session.get(type(item), item.id), status="retired")
        async with db.session() as session:
            assert await content_files.live_file(session, item.id) is None
    finally:
        await db.dispose()
