"""The figures behind one `report` (统计): its funnel, the leaderboards, the top content and the chart's
14-day trend.

They are independent queries (store/stats.py defines each), so on PostgreSQL they run at once, the
leaderboards on a connection of their own borrowed from the pool, the trend and the top content on
another, and the reply's text waits for the slowest of them instead of their sum (issue 17: the whole reply, chart included,
within 200 ms at 1M clicks; the funnel and the leaderboards were ~70 ms each). At most
`SPARE_CONNECTIONS` are borrowed at once from one pool, so a burst of reports cannot drain the pool
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
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from store.stats import (ContentStanding, Funnel, Period, Scope, Standing, content_standings, funnel, member_standings,
                         partner_standings, trend)

SPARE_CONNECTIONS = 4  # per pool (one Database), for all its reports running at once
T = TypeVar("T")


@dataclass
class ReportFigures:
    funnel: Funnel
    members: dict[int, Standing]
    partners: list[Standing]  # empty when the scope is one partner: its report ranks its people only
    trend: dict[str, list[int]]
    content: list[ContentStanding]  # best first; empty when the scope is one content item (its report has no board)


class _Spare:
    """Connections borrowed from each pool (the event loop's thread only: no lock needed). Counted per
    pool, not per process: two Databases in one process (tests, benchmarks, a CLI beside the server)
    have two pools, and one's reports must not take the other's spare connections."""

    in_use: WeakKeyDictionary[Any, int] = WeakKeyDictionary()  # a disposed engine's pool goes with its count

    @classmethod
    def take(cls, pool: Any, n: int) -> bool:
        if cls.in_use.get(pool, 0) + n > SPARE_CONNECTIONS:
            return False
        cls.in_use[pool] = cls.in_use.get(pool, 0) + n
        return True

    @classmethod
    def give_back(cls, pool: Any, n: int) -> None:
        cls.in_use[pool] -= n


async def _on_a_connection_of_its_own(session: AsyncSession, query: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async with AsyncSession(session.bind) as own:  # read only: closing it rolls its transaction back
        return await query(own)


async def report_figures(session: AsyncSession, scope: Scope, period: Period, fortnight: Period) -> ReportFigures:
    """`scope`'s funnel, leaderboards and top content over `period`, and its per-day trend over `fortnight`."""
    async def standings(s: AsyncSession) -> tuple[dict[int, Standing], list[Standing]]:
        members = await member_standings(s, period, scope.partner_id, scope.task_id, scope.content_id)
        return members, [] if scope.partner_id else await partner_standings(s, members)

    async def trend_and_content(s: AsyncSession) -> tuple[dict[str, list[int]], list[ContentStanding]]:
        # One connection for both: together they take less than the funnel (~60 + ~20 ms at 1M clicks).
        days = await trend(s, scope, fortnight)
        return days, [] if scope.content_id is not None else await content_standings(s, scope, period)

    queries: list[Callable[[AsyncSession], Awaitable[Any]]] = [standings, trend_and_content]
    engine = session.bind  # (a session bound to one connection has nothing to borrow from)
    pool = engine.sync_engine.pool if isinstance(engine, AsyncEngine) else None
    if pool is None or engine.dialect.name != "postgresql" or not _Spare.take(pool, len(queries)):
        the_funnel = await funnel(session, scope, period)
        (members, partners), (days, content) = [await query(session) for query in queries]
        return ReportFigures(the_funnel, members, partners, days, content)
    try:
        # return_exceptions: every query has finished (none still using a session) before one's error is raised
        results = await asyncio.gather(funnel(session, scope, period),
                                       *(_on_a_connection_of_its_own(session, query) for query in queries),
                                       return_exceptions=True)
    finally:
        _Spare.give_back(pool, len(queries))
    for result in results:
        if isinstance(result, BaseException):
            raise result
    the_funnel, (members, partners), (days, content) = results
    return ReportFigures(the_funnel, members, partners, days, content)
