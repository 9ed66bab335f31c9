"""Marketers add content in chat (issue 16, DESIGN §2 `keep` / `收录`), through the simulator: a picture
or file sent to the bot is offered as `收录 标题 | 标签…`; the command fetches it from WeCom (media/get),
checks it with the library's rules and makes the item; partners' copies follow. Bad cases: nothing
pending, media WeCom no longer has (40007), an expired offer, too large, a wrong type, an empty title;
a partner sending a picture hears that the bot reads text only."""
import io
import re
from datetime import timedelta

import zxingcpp
from PIL import Image
from sqlalchemy import select, update

from bot.app import DB
from bot.demo import case_study_png, whitepaper_pdf
from handlers import answers
from store.content import tags_of
from store.content_files import file_bytes, file_info
from store.models import ContentItem, PendingUpload, utcnow
from tests.conftest import Stack, acknowledged
from tests.test_content_media import PDF, picture

OFFER = "收录 标题 | 标签…"


async def send(stack: Stack, userid: str, kind: str, data: bytes, filename: str = "", expect: int = 1) -> list[str]:
    """`userid` sends a picture or file in WeCom; the text of the next `expect` bot messages."""
    before = len(stack.sim.bot_messages(userid))
    acknowledged(await stack.sim.send_media(userid, kind, data, filename))
    messages = await stack.sim.wait_for_bot_messages(userid, before + expect)
    return [m.body.get("content", "") for m in messages[before:]]


async def item(stack: Stack, content_id: int) -> tuple[ContentItem, list[str], bytes | None]:
    async with stack.bot[DB].session() as session:
        found = await session.get(ContentItem, content_id)
        return found, (await tags_of(session, [content_id]))[content_id], await file_bytes(session, content_id)


def number(reply: str) -> int:
    return int(re.search(r"#(\d+)", reply).group(1))


async def test_a_marketer_keeps_a_picture_and_partners_take_their_copy(stack: Stack) -> None:
    data = picture("JPEG")
    [offer] = await send(stack, "mkt1", "image", data)
    assert OFFER in offer and "keep Title | tags…" in offer and offer.index("收到图片") < offer.index("Got your")
    [kept] = await stack.ask("mkt1", "收录 案例 | 制造")
    assert kept.startswith("已收录为素材 #") and "素材 " in kept, kept
    stored, tags, content = await item(stack, number(kept))
    assert (stored.kind, stored.title, stored.status, stored.audience, tags) == ("image", "案例", "published", "all", ["制造"])
    assert content == data
    # The offer is used up: a second keep has nothing to keep.
    [again] = await stack.ask("mkt1", "收录 案例二")
    assert "没有待收录" in again
    # A partner's copy is the picture with their QR code stamped on it.
    await stack.ask("p1", f"素材 {stored.id}", expect=2)
    image, note = stack.sim.bot_messages("p1")[-2:]
    assert image.msgtype == "image" and "专属图片" in note.body["content"]
    [code] = [b.text for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(stack.sim.media[image.body["media_id"]][0])))]
    assert "/t/" in code


async def test_a_file_keeps_its_name_and_the_newest_upload_wins(stack: Stack) -> None:
    await send(stack, "admin1", "image", picture())
    [offer] = await send(stack, "admin1", "file", PDF, "白皮书 2026.pdf")
    assert "文件“白皮书 2026.pdf”" in offer and OFFER in offer
    [kept] = await stack.ask("admin1", "keep Whitepaper 2026 | report, 制造")
    assert kept.startswith("Kept as content #"), kept
    stored, tags, content = await item(stack, number(kept))
    assert (stored.kind, stored.title, sorted(tags), content) == ("file", "Whitepaper 2026", ["report", "制造"], PDF)
    async with stack.bot[DB].session() as session:
        assert (await file_info(session, stored.id)).filename == "白皮书 2026.pdf"


async def test_bad_cases_get_clear_answers(stack: Stack) -> None:
    [nothing] = await stack.ask("mkt1", "keep Case")
    assert "Nothing to keep" in nothing
    [empty] = await stack.ask("mkt1", "收录 | 制造")
    assert "请先写标题" in empty
    # WeCom no longer has it (40007).
    await send(stack, "mkt1", "image", picture())
    stack.sim.age_media(next(reversed(stack.sim.media)), 3 * 86400 + 60)
    [gone] = await stack.ask("mkt1", "收录 案例")
    assert "已失效" in gone and "3 天" in gone
    # The offer itself is over 3 days old: not even asked for.
    await send(stack, "mkt1", "image", picture())
    async with stack.bot[DB].session() as session:
        await session.execute(update(PendingUpload).values(received_at=utcnow() - timedelta(days=3, minutes=1)))
        await session.commit()
    calls = stack.sim.api_calls["media/get"]
    [old] = await stack.ask("mkt1", "keep Case")
    assert "no longer available" in old and stack.sim.api_calls["media/get"] == calls
    # Too large: over WeCom's 20 MB file limit.
    await send(stack, "mkt1", "file", b"%PDF-" + bytes(21 * 1024 * 1024), "big.pdf")
    [big] = await stack.ask("mkt1", "收录 大文件")
    assert "未收录" in big and "最大 20 MB" in big
    # The wrong type, by its bytes.
    await send(stack, "mkt1", "file", b"just some notes\n" * 10, "notes.txt")
    [wrong] = await stack.ask("mkt1", "keep Notes")
    assert "Not kept" in wrong and "PDF" in wrong
    await send(stack, "mkt1", "image", b"GIF89a" + bytes(100))
    [gif] = await stack.ask("mkt1", "收录 动图")
    assert "PNG 或 JPEG" in gif
    async with stack.bot[DB].session() as session:
        assert not list(await session.scalars(select(ContentItem)))


async def test_partners_sending_a_picture_hear_text_only(stack: Stack) -> None:
    assert await send(stack, "p1", "image", picture()) == [answers.TEXT_ONLY.content]
    [refused] = await stack.ask("p1", "收录 案例")
    assert "收录" in refused and "没有待收录" not in refused


async def test_the_demo_library_has_a_gated_whitepaper_and_a_case_image(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bot.demo import seed_demo
    from store.db import Database
    from tests.conftest import migrated_sqlite

    db = Database(await migrated_sqlite(tmp_path))
    try:
        async with db.session() as session:
            await seed_demo(session)
        async with db.session() as session:
            items = {i.kind: i for i in await session.scalars(select(ContentItem))}
            paper, image = items["file"], items["image"]
            assert paper.gated and paper.status == "published" and not image.gated
            assert (await file_info(session, paper.id)).content_type == "application/pdf"
            assert await file_bytes(session, paper.id) == whitepaper_pdf()
            assert (await file_info(session, image.id)).content_type == "image/png"
            assert await file_bytes(session, image.id) == case_study_png()
    finally:
        await db.dispose()


def test_the_demo_whitepaper_is_a_well_formed_pdf() -> None:
    """Its cross-reference table points at each object, and startxref at the table."""
    pdf = whitepaper_pdf()
    start = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[start:].startswith(b"xref\n0 6\n") and pdf.endswith(b"%%EOF\n")
    offsets = [int(line[:10]) for line in pdf[start:].split(b"\n")[3:8]]
    assert [pdf[o:o + 8] for o in offsets] == [f"{n} 0 obj\n".encode() for n in range(1, 6)]


def test_media_get_names_the_file_like_wecom() -> None:
    from bot.channels.wecom_api import disposition_name

    assert disposition_name('attachment; filename="MEDIA_ID.jpg"') == "MEDIA_ID.jpg"
    assert disposition_name("attachment; filename*=UTF-8''%E7%99%BD%E7%9A%AE%E4%B9%A6.pdf") == "白皮书.pdf"
    assert disposition_name("") == ""
