"""Posters: the QR code scans back to the member's URL, Chinese text has real glyphs and fits its box,
every template renders, and the disk cache hits, invalidates and writes atomically."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image, ImageChops

from bot.config import ASSETS
from bot.render import posters
from bot.render.posters import (
    BUNDLED,
    Layout,
    PosterRenderer,
    PosterRequest,
    QRSpec,
    TextSpec,
    UnknownTemplate,
    choose_face,
    fit_text,
    font,
    has_glyph,
    qr_image,
)

TEMPLATES = ASSETS / "posters"
URL = "https://partner.example.com/t/k3v9QpL2mZaX"
NAMES = ["王子涵", "欧阳娜娜", "李梓萱", "周诗琪", "郭璐瑶", "胡鑫", "迪丽热巴·迪力木拉提"]
TITLE = "企业数字化转型实战训练营：从战略规划到落地执行的全流程方法论，助你业绩翻倍增长"
PARTNER = "杭州云栖信息科技有限公司"


def request(template: str = "classic", **fields: str) -> PosterRequest:
    values = {"qr_url": URL, "member_name": "王子涵", "partner_name": PARTNER, "task_title": "2025 云上增长峰会"}
    return PosterRequest(template=template, **{**values, **fields})


def decode(image: Image.Image) -> list[str]:
    return [b.text for b in zxingcpp.read_barcodes(image) if b.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.fixture
def renderer(tmp_path: Path) -> PosterRenderer:
    return PosterRenderer(TEMPLATES, tmp_path / "cache")


@pytest.fixture
def own_templates(tmp_path: Path) -> Path:
    """A copy of the shipped templates that a test may edit."""
    shutil.copytree(TEMPLATES, tmp_path / "templates", ignore=shutil.ignore_patterns("*.py", "*.md"))
    return tmp_path / "templates"


def test_at_least_two_templates_ship_and_classic_is_one(renderer: PosterRenderer) -> None:
    assert "classic" in renderer.templates() and len(renderer.templates()) >= 2


@pytest.mark.parametrize("template", sorted(p.parent.name for p in TEMPLATES.glob("*/layout.json")))
def test_every_template_renders_a_1080x1920_poster_whose_qr_scans(renderer: PosterRenderer, template: str) -> None:
    path = renderer.render(request(template, task_title=TITLE, member_name="欧阳娜娜"))
    with Image.open(path) as poster:
        assert poster.format == "PNG" and poster.size == (1080, 1920)
        assert decode(poster) == [URL]
        # Seen on a phone a third as wide (a chat thumbnail, a photo of a screen): still scans.
        assert decode(poster.convert("RGB").resize((360, 640), Image.Resampling.BILINEAR)) == [URL]
    assert path.stat().st_size < 3 * 1024 * 1024  # WeCom takes images up to 10 MB


@pytest.mark.parametrize("template", ["classic", "festive"])
def test_qr_with_the_centre_logo_still_scans(renderer: PosterRenderer, template: str) -> None:
    layout = Layout.parse(json.loads((TEMPLATES / template / "layout.json").read_text(encoding="utf-8")))
    assert layout.qr.logo, f"{template} is meant to have a logo"
    with Image.open(TEMPLATES / template / layout.qr.logo) as file:
        logo = file.convert("RGBA")
    for extra in range(0, 220, 20):  # the tracked URL, then longer and longer: denser and denser codes
        url = URL + "?utm_content=" + "9" * extra if extra else URL
        with_logo, plain = qr_image(url, layout.qr, logo), qr_image(url, layout.qr)
        centre = (layout.qr.size // 2, layout.qr.size // 2)
        assert ImageChops.difference(with_logo, plain).getpixel(centre) != (0, 0, 0)  # the logo is there
        assert decode(with_logo) == [url], url
        small = with_logo.resize((layout.qr.size // 3, layout.qr.size // 3), Image.Resampling.BILINEAR)
        assert decode(small) == [url], url  # a third of the size, like a chat thumbnail
    with Image.open(renderer.render(request(template, qr_url=url))) as poster:
        assert decode(poster) == [url]


def test_qr_modules_are_whole_pixels_in_two_colours() -> None:
    spec = QRSpec(x=0, y=0, size=580, fg="#0b1d57", bg="#ffffff")
    image = qr_image(URL, spec)
    assert sorted(colour for _, colour in image.getcolors() or []) == [(11, 29, 87), (255, 255, 255)]  # no blur
    assert decode(image) == [URL]
    with pytest.raises(ValueError, match="too small"):
        qr_image(URL, QRSpec(x=0, y=0, size=60))


@pytest.mark.parametrize("weight", ["regular", "bold"])
def test_chinese_text_of_the_tests_has_real_glyphs_in_the_bundled_font(weight: str) -> None:
    face = BUNDLED[weight]
    probe = font(face, 40)
    notdef = bytes(probe.getmask("\U0010fffd"))  # what a missing glyph ("tofu") draws
    for char in "".join(NAMES) + TITLE + PARTNER + "长按识别二维码，立即参与！诚挚邀请（限时）《》“”…—":
        mask = probe.getmask(char)
        assert has_glyph(face, char), char
        assert bytes(mask) != notdef and mask.getbbox(), char
    assert choose_face("".join(NAMES) + TITLE, weight) == face  # no fallback needed
    # ...and the check does tell: characters outside the subset (not in GB 2312) are caught.
    assert not has_glyph(face, "喆") and not has_glyph(face, "\U0001f600")


def test_the_subset_covers_every_gb2312_hanzi() -> None:
    hanzi = []
    for row in range(16, 88):  # level 1 (rows 16-55, the 3,755 most common) and level 2
        for cell in range(1, 95):
            try:
                hanzi.append(bytes([0xA0 + row, 0xA0 + cell]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    assert len(hanzi) == 6763
    assert [c for c in hanzi if not has_glyph(BUNDLED["regular"], c)] == []


def test_characters_outside_the_subset_fall_back_or_are_named_in_a_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    if posters.SYSTEM["regular"][0].is_file():  # Debian's fonts-noto-cjk: the full font draws them
        assert choose_face("张喆", "regular") == posters.SYSTEM["regular"]
    missing = {w: (tmp_path / "absent.ttc", 2) for w in ("regular", "bold")}
    monkeypatch.setattr(posters, "SYSTEM", missing)
    with caplog.at_level(logging.WARNING, logger="bot.render.posters"):
        assert choose_face("张喆", "bold") == BUNDLED["bold"]
    assert "喆" in caplog.text and "张" not in caplog.text.split("no glyph for")[1]


def test_a_very_long_chinese_title_wraps_and_shrinks_inside_its_box(renderer: PosterRenderer) -> None:
    layout = Layout.parse(json.loads((TEMPLATES / "classic" / "layout.json").read_text(encoding="utf-8")))
    spec = layout.texts["task_title"]
    fitted = fit_text(TITLE, spec)
    assert 1 < len(fitted.lines) <= spec.max_lines
    assert spec.min_size <= fitted.size < spec.size  # shrunk, not cut
    assert not fitted.ellipsized and "".join(fitted.lines) == TITLE  # every character is there
    f = font(fitted.face, fitted.size)
    assert all(f.getbbox(line)[2] <= spec.max_width and f.getlength(line) <= spec.max_width
               for line in fitted.lines)
    assert not any(line[0] in "，。：；！？" for line in fitted.lines)  # no punctuation opens a line

    # On the poster: all the title's ink is inside its box (the difference from a poster without it).
    with Image.open(renderer.render(request(task_title=TITLE))) as a, \
            Image.open(renderer.render(request(task_title=""))) as b:
        ink = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox()
    assert ink is not None
    left, top, right, bottom = ink
    box_height = spec.max_lines * spec.size * spec.line_height
    assert spec.x <= left and right <= spec.x + spec.max_width
    assert spec.y <= top and bottom <= spec.y + box_height


def test_text_too_long_even_at_the_minimum_size_ellipsizes_only_the_last_line() -> None:
    spec = TextSpec(x=0, y=0, max_width=600, size=60, min_size=40, max_lines=2)
    fitted = fit_text(TITLE * 3, spec)
    assert fitted.size == 40 and len(fitted.lines) == 2 and fitted.ellipsized
    assert fitted.lines[-1].endswith("…") and not fitted.lines[0].endswith("…")
    assert (TITLE * 3).startswith("".join(fitted.lines)[:-1])  # whole characters, in order
    f = font(fitted.face, fitted.size)
    assert all(f.getbbox(line)[2] <= 600 for line in fitted.lines)


def test_breaks_prefer_spaces_and_punctuation_and_keep_latin_words_whole() -> None:
    spec = TextSpec(x=0, y=0, max_width=900, size=92, min_size=56, max_lines=3, weight="bold")
    assert fit_text("2025 云上增长峰会 · 限时免费报名", spec).lines == ("2025", "云上增长峰会", "限时免费报名")
    latin = fit_text("Q3 Partner Enablement Webinar: AI-powered CRM for SMB teams", spec)
    words = "Q3 Partner Enablement Webinar: AI-powered CRM for SMB teams".split()
    assert [w for line in latin.lines for w in line.split()] == words
    name = fit_text("Alexander Montgomery-Smith 王子涵", TextSpec(x=0, y=0, max_width=640, size=56, min_size=30))
    assert name.size < 56 and name.lines == ("Alexander Montgomery-Smith 王子涵",)  # one line: shrunk


def test_a_cache_hit_returns_the_same_file_without_drawing(renderer: PosterRenderer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    first = renderer.render(request())
    stat = first.stat()
    drawn = []

    def qr_image(*args: object) -> None:
        drawn.append(args)
        pytest.fail("drew a poster that is in the cache")

    monkeypatch.setattr(posters, "qr_image", qr_image)
    assert renderer.render(request()) == first
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns) and not drawn
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # no temp files left


def test_the_key_covers_the_request_and_the_template_files(own_templates: Path, tmp_path: Path) -> None:
    renderer = PosterRenderer(own_templates, tmp_path / "cache")
    base = renderer.render(request())
    paths = {base, renderer.render(request(member_name="李梓萱")), renderer.render(request(qr_url=URL + "x")),
             renderer.render(request(template="festive"))}
    assert len(paths) == 4
    layout = own_templates / "classic" / "layout.json"
    data = json.loads(layout.read_text(encoding="utf-8"))
    data["member_name"]["color"] = "#ffd166"
    layout.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    edited = renderer.render(request())
    assert edited != base and base.exists()
    with Image.open(base) as old, Image.open(edited) as new:
        assert ImageChops.difference(old.convert("RGB"), new.convert("RGB")).getbbox() is not None
    with Image.open(own_templates / "classic" / "background.png") as bg:
        bg.rotate(180).save(own_templates / "classic" / "background.png")
    assert renderer.render(request()) not in (base, edited)


def test_an_unknown_template_raises_and_lists_the_available_ones(renderer: PosterRenderer) -> None:
    for name in ("nope", "../posters/classic", ""):
        with pytest.raises(UnknownTemplate) as raised:
            renderer.render(request(template=name))
        assert isinstance(raised.value, ValueError)
        assert "classic" in str(raised.value) and "festive" in str(raised.value)
    assert not (renderer.cache_dir.exists() and any(renderer.cache_dir.iterdir()))


def test_a_layout_box_with_nothing_to_show_is_refused(own_templates: Path, tmp_path: Path) -> None:
    layout = own_templates / "classic" / "layout.json"
    data = json.loads(layout.read_text(encoding="utf-8"))
    data["member_nmae"] = data.pop("member_name")  # a typo: neither a request field nor a label
    layout.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="member_nmae"):
        PosterRenderer(own_templates, tmp_path / "cache").render(request())


def test_a_failed_write_leaves_neither_a_poster_nor_a_temp_file(renderer: PosterRenderer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(posters.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        renderer.render(request())
    assert list(renderer.cache_dir.iterdir()) == []


async def test_concurrent_renders_in_threads(renderer: PosterRenderer) -> None:
    requests = [request(template, member_name=name) for template in ("classic", "festive") for name in NAMES[:4]]
    paths = await asyncio.gather(*(asyncio.to_thread(renderer.render, r) for r in requests + requests))
    assert paths[: len(requests)] == paths[len(requests):] and len(set(paths)) == len(requests)
    for path in set(paths):
        with Image.open(path) as poster:
            assert decode(poster) == [URL]


@pytest.mark.parametrize("template", ["classic", "festive", "minimal"])
def test_the_task_layer_gives_the_same_pixels_as_drawing_everything(renderer: PosterRenderer, template: str) -> None:
    cases = [request(template, member_name=name, partner_name=partner, task_title=title)
             for name, partner, title in [("王子涵", PARTNER, TITLE), ("迪丽热巴·迪力木拉提" * 3, PARTNER * 4, TITLE),
                                          ("Alexandra Johnson-Smith", "", "Q4 Growth Summit"), ("", "", ""),
                                          ("胡鑫", "Blue Ocean Systems Ltd.", TITLE)]]
    for case in cases:
        layered, whole = renderer.draw(case), renderer.draw(case, layered=False)
        assert ImageChops.difference(layered, whole).getbbox() is None, case
    drawn = posters.task_layer(*renderer._files(template), TITLE).drawn
    assert "task_title" in drawn and not drawn & {"member_name", "partner_name"}
    for case in cases:  # the file written (rows shared with the layer compressed once) holds those pixels
        with Image.open(renderer.render(case)) as saved:
            assert ImageChops.difference(saved, renderer.draw(case, layered=False)).getbbox() is None


def test_a_fixed_box_over_a_members_box_is_drawn_per_poster_in_its_place(own_templates: Path, tmp_path: Path) -> None:
    path = own_templates / "classic" / "layout.json"
    layout = json.loads(path.read_text(encoding="utf-8"))
    # "invite" moved onto the member's name, drawn after it: it must stay on top, as without the layer.
    layout["invite"].update(x=layout["member_name"]["x"], y=layout["member_name"]["y"] + 10, color="#ff0000")
    path.write_text(json.dumps(layout), encoding="utf-8")
    renderer = PosterRenderer(own_templates, tmp_path / "cache")
    case = request(member_name="欧阳娜娜王子涵李梓萱")
    drawn = posters.task_layer(*renderer._files("classic"), case.task_title).drawn
    assert "invite" not in drawn and {"footer", "task_title"} <= drawn
    layered, whole = renderer.draw(case), renderer.draw(case, layered=False)
    assert ImageChops.difference(layered, whole).getbbox() is None
    # And the order matters here (the test could fail): the name drawn over the box differs.
    moved = {k: v for k, v in layout.items() if k != "invite"}
    moved = {"invite": layout["invite"], **moved}
    path.write_text(json.dumps(moved), encoding="utf-8")
    reordered = PosterRenderer(own_templates, tmp_path / "cache2").draw(case, layered=False)
    assert ImageChops.difference(reordered, whole).getbbox() is not None


def test_posters_encoded_with_shared_rows_decode_to_their_exact_pixels() -> None:
    import zlib

    import numpy as np

    from bot.render import png

    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))
    encoder = png.SharedRowsPNG(base, [(40, 90), (85, 120), (250, 400)])
    assert [rows for rows, _ in png.spans(300, [(40, 90), (85, 120), (250, 400)])] == [(0, 40), (40, 120), (120, 250), (250, 300)]
    same_rows, elsewhere = base.copy(), base.copy()
    same_rows.paste((255, 0, 0), (10, 50, 190, 110))
    elsewhere.paste((0, 0, 255), (0, 0, 200, 5))  # outside the rows meant to change: still right
    for picture in (base, same_rows, elsewhere, Image.new("RGB", (200, 300), "#123456")):
        with Image.open(io.BytesIO(encoder.encode(picture))) as decoded:
            assert decoded.mode == "RGB" and ImageChops.difference(decoded, picture).getbbox() is None
    a, b = b"poster rows" * 1000, b"and more rows" * 3000
    assert png.adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
