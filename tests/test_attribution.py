"""Attribution models on hand-computed examples, and exact totals."""
import random
from datetime import timedelta
from decimal import Decimal

import pytest

from store import attribution
from store.attribution import credit
from store.db import Database
from store.members import get_member
from store.models import Lead, LeadTouch, Task, TrackedLink, utcnow
from store.stats import parse_period
from tests.conftest import seed

D = Decimal


@pytest.mark.parametrize("model, touches, amount, expected", [
    ("first", 1, "900", ["900"]),
    ("first", 3, "900", ["900", "0", "0"]),
    ("last", 3, "900", ["0", "0", "900"]),
    ("linear", 1, "900", ["900"]),
    ("linear", 3, "900", ["300", "300", "300"]),
    ("linear", 3, "100", ["33.34", "33.33", "33.33"]),  # the odd cent goes to the earliest
    ("u", 1, "1000", ["1000"]),
    ("u", 2, "1000", ["500", "500"]),
    ("u", 3, "1000", ["400", "200", "400"]),
    ("u", 4, "1000", ["400", "100", "100", "400"]),
    ("u", 5, "1000", ["400", "66.67", "66.67", "66.66", "400"]),
    ("u", 4, "0.05", ["0.02", "0.01", "0", "0.02"]),
    ("linear", 0, "100", []),
])
def test_hand_computed_credits(model: str, touches: int, amount: str, expected: list[str]) -> None:
    assert credit(D(amount), touches, model) == [D(e) for e in expected]


def test_parts_always_add_up_to_the_amount() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        amount = D(rng.randint(1, 10**9)) / 100
        touches = rng.randint(1, 12)
        for model in attribution.MODELS:
            parts = credit(amount, touches, model)
            assert sum(parts) == amount and len(parts) == touches and min(parts) >= 0


async def test_revenue_credited_per_task_and_partner(sqlite_url: str) -> None:
    """p1 (星河科技) shared task A, p2 (Blue Ocean) task B. Lead 1 (12,000) was touched A, B, A, B;
    lead 2 (3,000) only B; lead 3 (5,000) has no touch; lead 4 is won but last month."""
    await seed(sqlite_url)
    db = Database(sqlite_url)
    now = utcnow()
    try:
        async with db.session() as session:
            p1, p2 = await get_member(session, "p1"), await get_member(session, "p2")
            task_a = Task(title="A", target_url="https://a.example", status="active", cost=D("2000"))
            task_b = Task(title="B", target_url="https://b.example", status="active")
            session.add_all([task_a, task_b])
            await session.flush()
            link_a = TrackedLink(code="aaaa", task_id=task_a.id, member_id=p1.id, channel="link")
            link_b = TrackedLink(code="bbbb", task_id=task_b.id, member_id=p2.id, channel="link")
            session.add_all([link_a, link_b])
            leads = [Lead(name=f"L{i}", phone=f"1380000000{i}", source="t", status="won", won_amount=D(amount),
                          won_at=now - timedelta(days=days)) for i, (amount, days) in
                     enumerate((("12000", 0), ("3000", 0), ("5000", 0), ("7000", 400)))]
            session.add_all(leads)
            await session.flush()
            for lead, links in ((leads[0], [link_a, link_b, link_a, link_b]), (leads[1], [link_b]), (leads[3], [link_a])):
                session.add_all([LeadTouch(lead_id=lead.id, link_id=link.id, kind="click", at=now - timedelta(hours=10 - i))
                                 for i, link in enumerate(links)])
            ids, partners = (task_a.id, task_b.id), (p1.partner_id, p2.partner_id)
        period = parse_period("30d", "Asia/Shanghai", (now + timedelta(hours=8)).date())
        expected = {  # (task A, task B); A is 星河科技's, B is Blue Ocean's
            "first": (D("12000"), D("3000")), "last": (D("0"), D("15000")),
            "linear": (D("6000"), D("9000")), "u": (D("6000"), D("9000")),  # 40+10 / 10+40 of 12,000
        }
        for model, (a, b) in expected.items():
            async with db.session() as session:
                result = await attribution.attribute(session, period, model)
            assert (result.by_task[ids[0]], result.by_task[ids[1]]) == (a, b), model
            assert (result.by_partner.get(partners[0], 0), result.by_partner.get(partners[1], 0)) == (a, b), model
            assert result.unattributed == D("5000") and result.revenue == D("20000") and result.won_leads == 3
            assert sum(result.by_task.values()) + result.unattributed == result.revenue
            assert result.roi(ids[0]) == float((a - 2000) / 2000) and result.roi(ids[1]) is None
    finally:
        await db.dispose()
