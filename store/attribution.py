"""Won revenue credited over each lead's touches (DESIGN §4): first, last, linear, U-shaped.

A touch is a click or form fill on a tracked link, so it names a task or a content item (a copy's
link) and, through the member who shared it, a partner; clicks a fraud flag holds are not touches
while held. Each touch's credit goes to its task or content item and to its partner alike. Credits are in
cents and always add up to the won amount exactly; a won lead with no touch is reported as
unattributed, so every model's total is the won revenue.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from itertools import groupby

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Click, ContentItem, Lead, LeadTouch, Member, Partner, Task, TrackedLink
from store.stats import Period

CENT = Decimal("0.01")
MODELS = ("first", "last", "linear", "u")
MODEL_WORDS = {"first": "first", "first-touch": "first", "首次": "first", "首触": "first",
               "last": "last", "last-touch": "last", "末次": "last", "末触": "last",
               "linear": "linear", "线性": "linear", "u": "u", "u-shaped": "u", "u型": "u", "u形": "u"}
MODEL_COMMAND_ZH = {"first": "首次", "last": "末次", "linear": "线性", "u": "U型"}
MODEL_NAMES = {"first": ("first-touch", "首次触点"), "last": ("last-touch", "末次触点"),
               "linear": ("linear", "线性"), "u": ("U-shaped", "U 型")}


def weights(touches: int, model: str) -> list[Decimal]:
    """Each touch's share of the credit, adding up to 1."""
    if touches == 0:
        return []
    if model == "first":
        return [Decimal(1)] + [Decimal(0)] * (touches - 1)
    if model == "last":
        return [Decimal(0)] * (touches - 1) + [Decimal(1)]
    if model == "linear" or touches <= 2:  # U-shaped: 1 touch 100 %, 2 touches 50/50
        return [Decimal(1) / touches] * touches
    if model == "u":
        middle = Decimal("0.2") / (touches - 2)
        return [Decimal("0.4")] + [middle] * (touches - 2) + [Decimal("0.4")]
    raise ValueError(f"unknown attribution model {model!r}")


def credit(amount: Decimal, touches: int, model: str) -> list[Decimal]:
    """Split `amount` over the touches in cents, so the parts add up to `amount` exactly: each
    part is rounded down, and the cents left go one each to the largest remainders (earliest first)."""
    exact = [amount * share for share in weights(touches, model)]
    parts = [value.quantize(CENT, rounding=ROUND_DOWN) for value in exact]
    left = int((amount - sum(parts, Decimal(0))) / CENT)
    order = sorted(range(touches), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:left]:
        parts[i] += CENT
    return parts


@dataclass
class Attribution:
    model: str
    won_leads: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal(0))
    unattributed: Decimal = field(default_factory=lambda: Decimal(0))
    held_revenue: Decimal = field(default_factory=lambda: Decimal(0))  # won leads a fraud flag holds
    by_task: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    by_partner: dict[int | None, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    by_content: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    task_names: dict[int, str] = field(default_factory=dict)
    task_costs: dict[int, Decimal | None] = field(default_factory=dict)
    partner_names: dict[int, str] = field(default_factory=dict)
    content_names: dict[int, str] = field(default_factory=dict)

    def roi(self, task_id: int) -> float | None:
        """(credited − cost) / cost; None without a cost."""
        cost = self.task_costs.get(task_id)
        return float((self.by_task[task_id] - cost) / cost) if cost else None


async def attribute(session: AsyncSession, period: Period, model: str) -> Attribution:
    """Credit the revenue of leads won in the period."""
    result = Attribution(model)
    won = (await session.execute(select(Lead.id, Lead.won_amount).where(
        Lead.status == "won", Lead.won_at >= period.start, Lead.won_at < period.end, Lead.held.is_(False)))).all()
    result.held_revenue = Decimal(await session.scalar(select(func.coalesce(func.sum(Lead.won_amount), 0)).where(
        Lead.status == "won", Lead.won_at >= period.start, Lead.won_at < period.end, Lead.held.is_(True))) or 0)
    amounts = {lead_id: Decimal(amount or 0) for lead_id, amount in won}
    result.won_leads, result.revenue = len(amounts), sum(amounts.values(), Decimal(0))
    touches = (await session.execute(
        select(LeadTouch.lead_id, TrackedLink.task_id, TrackedLink.content_id, Member.partner_id)
        .join(Lead, Lead.id == LeadTouch.lead_id).join(TrackedLink, TrackedLink.id == LeadTouch.link_id)
        .join(Member, Member.id == TrackedLink.member_id).outerjoin(Click, Click.id == LeadTouch.click_id)
        # A click a fraud flag holds is no touch (until an admin clears it; rejected, it never is).
        .where(Lead.status == "won", Lead.won_at >= period.start, Lead.won_at < period.end, Lead.held.is_(False),
               or_(LeadTouch.click_id.is_(None), Click.held.is_(False)))
        .order_by(LeadTouch.lead_id, LeadTouch.at, LeadTouch.id))).all()
    touched = set()
    for lead_id, rows in groupby(touches, key=lambda row: row.lead_id):
        rows = list(rows)
        touched.add(lead_id)
        for row, part in zip(rows, credit(amounts[lead_id], len(rows), model)):
            if row.task_id is not None:
                result.by_task[row.task_id] += part
            if row.content_id is not None:  # a content copy's link
                result.by_content[row.content_id] += part
            result.by_partner[row.partner_id] += part
    result.unattributed = sum((a for lead_id, a in amounts.items() if lead_id not in touched), Decimal(0))
    # Tasks that were credited, and those with a cost (spent, maybe for nothing yet).
    for task_id, title, cost in await session.execute(select(Task.id, Task.title, Task.cost).where(
            Task.id.in_(list(result.by_task)) | (Task.cost.is_not(None) & (Task.status != "draft")))):
        result.task_names[task_id], result.task_costs[task_id] = title, cost
        result.by_task[task_id] += 0
    result.partner_names = dict((await session.execute(select(Partner.id, Partner.name))).all())
    result.content_names = dict((await session.execute(select(ContentItem.id, ContentItem.title)
                                                       .where(ContentItem.id.in_(list(result.by_content))))).all())
    return result
