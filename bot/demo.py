"""Demo data and settings for `partnerbot demo`: everything local, no credentials needed."""
from __future__ import annotations

import secrets
import string

from bot.config import Config
from store.members import MemberRow

DEMO_MEMBERS = [
    MemberRow(0, "demo-admin", "王经理", "admin", "", "华东", ()),
    MemberRow(0, "demo-marketer", "李市场", "marketer", "", "华东", ()),
    MemberRow(0, "zhangwei", "张伟", "partner", "星河科技", "华东", ("制造", "零售")),
    MemberRow(0, "lina", "李娜", "partner", "星河科技", "华东", ("零售",)),
    MemberRow(0, "chenjie", "陈杰", "partner", "蓝海渠道", "华南", ("金融",)),
    MemberRow(0, "wangfang", "王芳", "partner", "蓝海渠道", "华南", ("金融",)),
]
# Partner staff outside the brand's WeCom: they use the Official Account (userid -> bound openid).
DEMO_WECHAT_ONLY = {"wangfang": "oDemo000000000000000Wangfang"}
# (name, company, phone, region, industry, partner pool or "" for the public pool)
DEMO_LEADS = [
    ("赵总", "华星制造", "13800000001", "上海", "制造", ""),
    ("钱经理", "远航物流", "13800000002", "广州", "物流", ""),
    ("周女士", "优品零售", "13800000005", "杭州", "零售", ""),
    ("孙女士", "星河老客户", "13800000003", "上海", "零售", "星河科技"),
    ("李先生", "蓝海金融", "13800000004", "深圳", "金融", "蓝海渠道"),
]
# The content library (issue 16), oldest first so the article is 素材 1: keyword arguments of
# store.content.create_content; then DEMO_FILES (the gated whitepaper, the case-study image).
DEMO_CONTENT = [
    dict(title="制造业数字化转型：华星制造的 90 天", url="https://brand.example/cases/huaxing-90-days",
         summary="一家 300 人工厂如何在 90 天内上线数字化产线，成本下降 18%。", tags=("制造", "案例")),
    dict(title="三分钟看懂秋季新品", url="https://www.bilibili.com/video/BV1demo00001",
         summary="新品功能演示视频，适合发给第一次了解的客户。", tags=("新品", "视频")),
    dict(title="首次联系客户", tags=("开场",), body=(
        "您好，我是{公司}的{姓名}。\n"
        "我们和品牌方整理了一份制造业数字化案例，三分钟就能看完：\n"
        "{链接}\n"
        "如果对贵司有参考价值，我可以约个时间详细聊聊。")),
    dict(title="活动后跟进", tags=("跟进",), body=(
        "感谢您昨天来到我们的展位！\n"
        "您关心的方案资料在这里：{链接}\n"
        "有任何问题随时找我——{姓名}")),
]


def whitepaper_pdf() -> bytes:
    """A small, valid one-page PDF (catalog, page tree, page, font, content stream, xref table)."""
    lines = ["Manufacturing Digitalisation Whitepaper 2026", "", "1. Why 90 days is enough",
             "2. Costs down 18%: where the savings come from", "3. A checklist for your first production line"]
    text = "BT /F1 14 Tf 72 760 Td 18 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
               "/Contents 5 0 R >>", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               f"<< /Length {len(text)} >>\nstream\n{text}\nendstream"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def case_study_png() -> bytes:
    """A case-study picture (bars of a before/after chart), room left for the partner's QR code."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (900, 600), "#f4efe6")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 900, 90), fill="#1f4e79")
    for i, (before, after) in enumerate(((380, 300), (320, 210), (260, 150))):
        x = 120 + i * 220
        draw.rectangle((x, 520 - before, x + 70, 520), fill="#9aa9b8")
        draw.rectangle((x + 80, 520 - after, x + 150, 520), fill="#2e8b57")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# File and image items: keyword arguments of store.content_files.create_file_content but `data`, which
# `make` draws when the demo seeds.
DEMO_FILES = [
    dict(kind="file", title="2026 制造业数字化白皮书", filename="2026 制造业数字化白皮书.pdf", make=whitepaper_pdf,
         summary="留资后下载：90 天上线数字化产线的方法与清单。", tags=("白皮书", "制造"), gated=True),
    dict(kind="image", title="案例：华星制造降本 18%", filename="华星制造案例.png", make=case_study_png,
         tags=("案例", "制造")),
]
# In the WeCom directory but not registered with the bot: shows what a newcomer sees.
DEMO_GUESTS = {"guest01": "访客（未开通）"}


def demo_config(config: Config) -> Config:
    """Point the bot at the local simulator and fill in throwaway WeCom and WeChat credentials."""
    alphabet = string.ascii_letters + string.digits

    def aes_key() -> str:
        return "".join(secrets.choice(alphabet) for _ in range(43))

    wecom = config.wecom
    wecom.corp_id = wecom.corp_id or "wwdemo0000000001"
    wecom.agent_id = wecom.agent_id or 1000002
    wecom.secret = wecom.secret or secrets.token_urlsafe(32)
    wecom.token = wecom.token or secrets.token_urlsafe(16)
    wecom.encoding_aes_key = wecom.encoding_aes_key or aes_key()
    wechat = config.wechat
    wechat.app_id = wechat.app_id or "wxdemo0000000001"
    wechat.secret = wechat.secret or secrets.token_hex(16)  # AppSecrets are 32 hex digits
    wechat.token = wechat.token or secrets.token_urlsafe(16)
    wechat.encoding_aes_key = wechat.encoding_aes_key or aes_key()
    sim, server = config.simulator, config.server
    wecom.api_base_url = f"http://{sim.host}:{sim.port}"
    wechat.api_base_url = f"http://{sim.host}:{sim.port}/mp"
    sim.callback_url = f"http://{server.host}:{server.port}/wecom/callback"
    sim.wechat_callback_url = f"http://{server.host}:{server.port}/wechat/callback"
    return config


# WeCom customers of the demo's partner staff (`转发 N` reaches them); 陈杰 has no customer-contact permission.
DEMO_CUSTOMERS = {"zhangwei": 12, "lina": 5}
DEMO_NO_CUSTOMER_PERMISSION = ("chenjie",)


def demo_directory() -> dict[str, str]:
    return {**{m.userid: m.name for m in DEMO_MEMBERS if m.userid not in DEMO_WECHAT_ONLY}, **DEMO_GUESTS}


def demo_followers() -> dict[str, str]:
    """Made-up followers of the demo Official Account (openid -> nickname): 王芳 is bound to her
    member (partner staff outside WeCom); the others are not bound yet and see how to bind."""
    names = {m.userid: m.name for m in DEMO_MEMBERS}
    return {**{openid: names[userid] for userid, openid in DEMO_WECHAT_ONLY.items()},"oDemo0000000000000000Xiaomei": "小美", "oDemo0000000000000000Laozhou": "老周",
            "oDemo00000000000000000Anna_1": "Anna"}


async def seed_demo(session, timezone: str = "Asia/Shanghai") -> None:  # type: ignore[no-untyped-def]
    """Demo members (upserted) and, on a fresh database, a few leads in the public and partner pools,
    two weeks of one campaign's activity, so `统计` and `归因` have something to show, and a small
    content library for `素材`."""
    from store.demo import seed

    files = [{**{k: v for k, v in item.items() if k != "make"}, "data": item["make"]()} for item in DEMO_FILES]
    await seed(session, DEMO_MEMBERS, DEMO_WECHAT_ONLY, DEMO_LEADS, timezone, DEMO_CONTENT, files)
