"""A new lead's notice to its salesperson, within WeCom's daily send quota (store/quota.py).

The form's transaction writes the notice deferred, with the lead: it is never lost, and no submit
waits for the quota's lock, which another spender holds for its whole transaction (a broadcast's
10,000 cards: seconds); with 20,000 messages sent today, counting under it inside the form's
transaction took ~10 ms more of PostgreSQL's CPU per submit (bench/lead_notice.py). Right after the
commit this lets the notices go within the quota, counted once for all that came in meanwhile; what
does not fit waits for release_deferred_messages (bot/jobs.py), as does a notice this instance could
not let go (it stopped, or the database failed): a lead's notice is never dropped as stale."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.deferred import Queued, count_deferred
from store import quota as quota_store
from store.db import Database
from store.models import utcnow

log = logging.getLogger(__name__)


def notice_key(lead_id: int) -> str:
    return f"newlead:{lead_id}"


class LeadNotices:
    """Lets committed lead notices go, one release at a time per instance."""

    def __init__(self, rules: quota_store.QuotaRules) -> None:
        self.rules = rules
        self.waiting: list[str] = []  # message keys committed and not yet let go here
        self.releasing: asyncio.Task[None] | None = None

    def committed(self, key: str, db: Database, outbox: Any) -> None:
        """The notice with this key is committed deferred: let it go soon (`outbox`: its kick() wakes
        the sender)."""
        self.waiting.append(key)
        if self.releasing is None or self.releasing.done():
            self.releasing = asyncio.create_task(self._release(db, outbox))

    async def drain(self) -> None:
        """At shutdown, before the database goes: let the release under way finish (what it leaves, the
        periodic release sends; nothing is lost either way, but a graceful stop leaves nothing half-done)."""
        if self.releasing is not None:
            await asyncio.gather(self.releasing, return_exceptions=True)

    async def _release(self, db: Database, outbox: Any) -> None:
        while self.waiting:
            keys, self.waiting = self.waiting, []
            try:
                async with db.session() as session:
                    quota = await quota_store.hold_quota(session, now=utcnow(), rules=self.rules)
                    released = await quota_store.release_deferred(session, quota.left, utcnow(), keys=keys)
                    # Fewer than all: past the quota, or the periodic release took some first.
                    deferred = await quota_store.still_deferred(session, keys) if released < len(keys) else 0
            except Exception:  # the periodic release sends them: they are committed
                log.exception("%d lead notice(s) left for the periodic release", len(keys))
                continue
            if released:
                outbox.kick()
            count_deferred(Queued(quota_store.LEAD_NOTICE, released, deferred, quota, "lead notices"))
