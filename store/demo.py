"""The demo's data written: members, leads, a past campaign and a content library for `partnerbot
demo` (the data itself is bot/demo.py's)."""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store import links as link_store
from store.bindings import WECHAT, attach
from store.content import create_content
from store.content_files import create_file_content
from store.members import MemberRow, import_members
from store.models import (ContentItem, Lead, LeadEvent, LeadTouch, Member, Partner, Share, Task, TrackedLink,
                          utcnow)


async def seed(session: AsyncSession, members: list[MemberRow], wechat_only: dict[str, str],
               leads: list[tuple[str, str, str, str, str, str]], timezone: str,
               content: Sequence[Mapping[str, Any]] = (), files: Sequence[Mapping[str, Any]] = ()) -> None:
    """`members` (upserted), those in `wechat_only` bound to their openid, on a database without
    content the `content` library (then the `files`: store.content_files.create_file_content's
    arguments), and, on a fresh database, `leads` in the public and partner pools and two weeks of one
    campaign's activity up to today, so `统计` and `归因` have something to show."""
    await import_members(session, members)
    for userid, openid in wechat_only.items():
        member = await session.scalar(select(Member).where(Member.userid == userid))
        await attach(session, member, WECHAT, openid, push_there=True)
    if content and not await session.scalar(select(func.count()).select_from(ContentItem)):
        await seed_content(session, content, files)
    if await session.scalar(select(func.count()).select_from(Lead)):
        return
    partners = {p.name: p.id for p in await session.scalars(select(Partner))}
    session.add_all([Lead(name=name, company=company, phone=phone, region=region, industry=industry, source="demo",
                          pool_partner_id=partners.get(pool_name)) for name, company, phone, region, industry, pool_name
                     in leads])
    await session.flush()
    await _seed_campaign(session, timezone)


async def seed_content(session: AsyncSession, content: Sequence[Mapping[str, Any]],
                       files: Sequence[Mapping[str, Any]] = ()) -> list[ContentItem]:
    """Each item through the library's own rules (store.content.create_content, and for files and
    images store.content_files.create_file_content), added by the first marketer, oldest first."""
    creator = await session.scalar(select(Member).where(Member.role == "marketer").order_by(Member.id).limit(1))
    return [*[await create_content(session, creator=creator, **item) for item in content],
            *[await create_file_content(session, creator=creator, **item) for item in files]]


def _today_so_far(now: datetime, timezone: str) -> tuple[datetime, datetime]:
    """Local midnight (in UTC) and the moment halfway from it to `now`: activity seeded there falls in
    today, this week and this month whatever the date, so each default view of `统计` and `归因` has
    something to show, also at 00:30 on the 1st of a month."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    midnight = datetime.combine(local.date(), time(0), zone).astimezone(now.tzinfo)
    return midnight, midnight + (now - midnight) / 2


async def _seed_campaign(session: AsyncSession, timezone: str) -> None:
    """A campaign seeded relative to now: shares and clicks over the last 14 days (through the real
    click path, so the daily counts are right) with another round of shares and clicks today, a lead
    that came in through a link 6 days ago and was won today, and one that came in today."""
    rng, now = random.Random(2026), utcnow()
    midnight, today = _today_so_far(now, timezone)
    members = {m.userid: m for m in await session.scalars(select(Member).where(Member.role == "partner"))}
    task = Task(title="秋季新品体验周", target_url="https://brand.example/autumn", status="ended",
                description="秋季新品体验周，欢迎预约", cost=Decimal(3000), created_at=now - timedelta(days=15))
    session.add(task)
    await session.flush()
    links = {}
    for userid, weight in (("zhangwei", 5), ("lina", 3), ("chenjie", 2)):
        member = members[userid]
        link = TrackedLink(code=f"demo{userid[:7]}", task_id=task.id, member_id=member.id, channel="link",
                           created_at=now - timedelta(days=14))
        session.add(link)
        await session.flush()
        links[userid] = link
        session.add_all([Share(task_id=task.id, member_id=member.id, channel="link", created_at=now - timedelta(days=13)),
                         Share(task_id=task.id, member_id=member.id, channel="poster", created_at=today)])
        clicks = [{"event_id": f"demo-{userid}-{i}", "link_id": link.id,
                   "at": now - timedelta(days=rng.uniform(0, 13)), "visitor_id": f"demo{rng.randint(0, 10**6)}",
                   "ip_hash": "demo", "user_agent": "Mozilla/5.0", "referrer": "", "is_bot": rng.random() < 0.1,
                   "is_unique": rng.random() < 0.7} for i in range(weight * 8)]
        clicks += [{"event_id": f"demo-{userid}-today-{i}", "link_id": link.id,
                    "at": midnight + (now - midnight) * rng.uniform(0, 1), "visitor_id": f"demo-today-{userid}-{i}",
                    "ip_hash": "demo", "user_agent": "Mozilla/5.0", "referrer": "", "is_bot": False,
                    "is_unique": True} for i in range(weight)]
        await link_store.insert_clicks(session, clicks, timezone)
    for name, phone, sharer, won, created in (("吴总", "13900000011", "zhangwei", Decimal(26000), now - timedelta(days=6)),
                                              ("郑经理", "13900000012", "chenjie", None, today)):
        member, link = members[sharer], links[sharer]
        lead = Lead(name=name, company=f"{name[0]}氏集团", phone=phone, source="form:link", status="won" if won else "claimed",
                    owner_id=member.id, partner_id=member.partner_id, task_id=task.id, link_id=link.id,
                    won_amount=won, won_at=today if won else None, claimed_at=created,
                    created_at=created, updated_at=created)
        session.add(lead)
        await session.flush()
        session.add_all([LeadEvent(lead_id=lead.id, kind="created", note="demo", at=created),
                         LeadEvent(lead_id=lead.id, kind="assigned", member_id=member.id, note="sharer", at=created),
                         LeadTouch(lead_id=lead.id, link_id=links["lina"].id, kind="click", at=created - timedelta(days=3)),
                         LeadTouch(lead_id=lead.id, link_id=link.id, kind="form", at=created)])
        if won:
            session.add(LeadEvent(lead_id=lead.id, kind="won", member_id=member.id, note=str(won), at=lead.won_at))
