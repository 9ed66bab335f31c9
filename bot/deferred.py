"""Counting what WeCom's daily send quota deferred, once the transaction that deferred it has committed:
for the jobs (bot/jobs.py) and for new-lead notices (bot/web/lead_notices.py) alike."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.metrics import QUOTA_DEFERRED
from store import quota as quota_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queued:
    """What one transaction queued of what the bot sends by itself: `queued_now` within the quota, `deferred`
    past it, and the quota as it was counted (for the log)."""
    purpose: str
    queued_now: int
    deferred: int
    quota: quota_store.Allowance
    what: str


NOTHING_QUEUED = Queued("", 0, 0, quota_store.Allowance(0, 0, 0), "")


def count_deferred(queued: Queued) -> int:
    """Count and log the deferred rows once their transaction has committed (so call it after the
    session block): counted while queueing, a rollback after it would have counted rows that never
    were. How many were queued now."""
    if queued.deferred:
        QUOTA_DEFERRED.labels(queued.purpose).inc(queued.deferred)
        quota = queued.quota
        log.warning("%s: %d message(s) deferred, past today's WeCom send quota (%d of %d used, %d kept for "
                    "replies); they go when it has room", queued.what, queued.deferred, quota.used + queued.queued_now,
                    quota.limit, quota.kept)
    return queued.queued_now
