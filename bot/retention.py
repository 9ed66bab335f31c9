"""The retention job: deletes what grows without bound (store/retention.py decides what), once per
period across instances, and prunes this instance's own poster cache. What it deleted shows in
/metrics as partnerbot_retention_deleted_total{what=...}."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import RedisError

from bot.metrics import RETENTION_DELETED, RETENTION_LAST_RUN
from bot.render.posters import PosterRenderer
from bot.web.clicks import ClickRecorder
from store import retention
from store.db import Database
from store.models import utcnow
from store.runs import claim_run

log = logging.getLogger(__name__)
STREAM_AND_FILES = ("poster_files", "click_stream_entries", "click_stream_consumers")


@dataclass
class RetentionJob:
    db: Database
    settings: retention.RetentionSettings
    every_seconds: float
    posters: PosterRenderer | None = None
    posters_days: float = 0.0
    clicks: ClickRecorder | None = None

    def __post_init__(self) -> None:
        for what in (*(kind.name for kind in retention.KINDS), *STREAM_AND_FILES):
            RETENTION_DELETED.labels(what)  # shown as 0 from the start, not only after a first deletion

    async def run(self, now: datetime | None = None) -> dict[str, int]:
        """What was deleted, by kind. The database and the click stream are shared: one instance
        claims each period (the job's interval) and does them; every instance prunes its own posters."""
        now = now or utcnow()
        deleted: dict[str, int] = {}

        def count(what: str, how_many: int) -> None:
            deleted[what] = how_many
            RETENTION_DELETED.labels(what).inc(how_many)  # at once: a later failure keeps what was done

        if self.posters is not None and self.posters_days:
            count("poster_files", await asyncio.to_thread(self.posters.prune, self.posters_days))
        async with self.db.session() as session:
            claimed = await claim_run(session, "retention", self.period(now))
        if claimed:
            for kind in retention.due_kinds(self.settings):
                count(kind.name, await self._delete_old(kind, now))
            if self.clicks is not None:
                try:
                    entries, consumers = await self.clicks.trim_stream()
                except RedisError as err:  # the stream is trimmed next time; the database part is done
                    log.warning("retention: the click stream was not trimmed (%s)", type(err).__name__)
                else:
                    count("click_stream_entries", entries)
                    count("click_stream_consumers", consumers)
            RETENTION_LAST_RUN.set(now.timestamp())
        if any(deleted.values()):
            log.info("retention deleted %s", ", ".join(f"{n} {what}" for what, n in deleted.items() if n))
        return deleted

    def period(self, now: datetime) -> str:
        """The claim's period: which interval of the job `now` falls in, the same on every instance."""
        return f"{int(now.timestamp() // max(self.every_seconds, 1))}"

    async def _delete_old(self, kind: retention.Kind, now: datetime) -> int:
        total, after = 0, 0
        for _ in range(self.settings.max_batches):
            async with self.db.session() as session:
                batch = await retention.delete_batch(session, kind, self.settings, now, after)
            total, after = total + batch.deleted, batch.last_key
            if not batch.more:
                break
            await asyncio.sleep(0)  # callbacks get the database between batches
        return total
