"""The figures behind one `report` (统计): its funnel, the leaderboards and the chart's 14-day trend.

They are independent queries (store/stats.py defines each), so on PostgreSQL they run at once, the
leaderboards and the trend each on a connection of their own borrowed from the pool, and the reply's
text waits for the slowest of them instead of their sum (issue 17: the whole reply, chart included,
within 200 ms at 1M clicks; the funnel and the leaderboards were ~70 ms each). At most
`SPARE_CONNECTIONS` are borrowed at once in a process, so a burst of reports cannot drain the pool
(10 + 10 overflow) that message handling needs; a report that finds none spare, or runs on SQLite
(one writer, and a test's uncommitted rows are not visible to other connections either way), runs
its queries one after another on its own session, as before. The borrowed connections only read,
each in a transaction of its own: under READ COMMITTED each statement of one session sees its own
snapshot anyway, so the figures agree with each other no less than before.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from store.stats import Funnel, Period, Scope, Standing, funnel, member_standings, partner_standings, trend

SPARE_CONNECTIONS = 4  # per process, for all reports running at once
T = TypeVar("T")


@dataclass
class ReportFigures:
    funnel: Funnel
    members: dict[int, Standing]
    partners: list[Standing]  # empty when the scope is one partner: its report ranks its people only
    trend: dict[str, list[int]]


class _Spare:
    """A count of borrowed connections (the event loop's thread only: no lock needed)."""

    in_use = 0

    @classmethod
    def take(cls, n: int) -> bool:
        if cls.in_use + n > SPARE_CONNECTIONS:
            return False
        cls.in_use += n
        return True

    @classmethod
    def give_back(cls, n: int) -> None:
        cls.in_use -= n


async def _on_a_connection_of_its_own(session: AsyncSession, query: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async with AsyncSession(session.bind) as own:  # read only: closing it rolls its transaction back
        return await query(own)


async def report_figures(session: AsyncSession, scope: Scope, period: Period, fortnight: Period) -> ReportFigures:
    """`scope`'s funnel and leaderboards over `period`, and its per-day trend over `fortnight`."""
    async def standings(s: AsyncSession) -> tuple[dict[int, Standing], list[Standing]]:
        members = await member_standings(s, period, scope.partner_id, scope.task_id, scope.content_id)
        return members, [] if scope.partner_id else await partner_standings(s, members)

    async def trend_of(s: AsyncSession) -> dict[str, list[int]]:
        return await trend(s, scope, fortnight)

    queries: list[Callable[[AsyncSession], Awaitable[Any]]] = [standings, trend_of]
    pool = session.bind  # (a session bound to one connection has nothing to borrow from)
    if not isinstance(pool, AsyncEngine) or pool.dialect.name != "postgresql" or not _Spare.take(len(queries)):
        the_funnel = await funnel(session, scope, period)
        (members, partners), days = [await query(session) for query in queries]
        return ReportFigures(the_funnel, members, partners, days)
    try:
        # return_exceptions: every query has finished (none still using a session) before one's error is raised
        results = await asyncio.gather(funnel(session, scope, period),
                                       *(_on_a_connection_of_its_own(session, query) for query in queries),
                                       return_exceptions=True)
    finally:
        _Spare.give_back(len(queries))
    for result in results:
        if isinstance(result, BaseException):
            raise result
    the_funnel, (members, partners), days = results
    return ReportFigures(the_funnel, members, partners, days)
