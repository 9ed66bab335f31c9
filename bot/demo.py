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
]
# (name, company, phone, region, industry, partner pool or "" for the public pool)
DEMO_LEADS = [
    ("赵总", "华星制造", "13800000001", "上海", "制造", ""),
    ("钱经理", "远航物流", "13800000002", "广州", "物流", ""),
    ("周女士", "优品零售", "13800000005", "杭州", "零售", ""),
    ("孙女士", "星河老客户", "13800000003", "上海", "零售", "星河科技"),
    ("李先生", "蓝海金融", "13800000004", "深圳", "金融", "蓝海渠道"),
]
# In the WeCom directory but not registered with the bot: shows what a newcomer sees.
DEMO_GUESTS = {"guest01": "访客（未开通）"}


def demo_config(config: Config) -> Config:
    """Point the bot at the local simulator and fill in throwaway WeCom credentials."""
    wecom = config.wecom
    wecom.corp_id = wecom.corp_id or "wwdemo0000000001"
    wecom.agent_id = wecom.agent_id or 1000002
    wecom.secret = wecom.secret or secrets.token_urlsafe(32)
    wecom.token = wecom.token or secrets.token_urlsafe(16)
    alphabet = string.ascii_letters + string.digits
    wecom.encoding_aes_key = wecom.encoding_aes_key or "".join(secrets.choice(alphabet) for _ in range(43))
    sim = config.simulator
    wecom.api_base_url = f"http://{sim.host}:{sim.port}"
    sim.callback_url = f"http://{config.server.host}:{config.server.port}/wecom/callback"
    return config


def demo_directory() -> dict[str, str]:
    return {**{m.userid: m.name for m in DEMO_MEMBERS}, **DEMO_GUESTS}


async def seed_demo(session) -> None:  # type: ignore[no-untyped-def]
    """Demo members (upserted) and, on a fresh database, a few leads in the public and partner pools."""
    from sqlalchemy import func, select

    from store.members import import_members
    from store.models import Lead, Partner

    await import_members(session, DEMO_MEMBERS)
    if await session.scalar(select(func.count()).select_from(Lead)):
        return
    partners = {p.name: p.id for p in await session.scalars(select(Partner))}
    session.add_all([Lead(name=name, company=company, phone=phone, region=region, industry=industry, source="demo",
                          pool_partner_id=partners.get(pool_name)) for name, company, phone, region, industry, pool_name
                     in DEMO_LEADS])
