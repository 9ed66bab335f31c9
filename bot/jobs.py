"""Periodic jobs. Each runs on every instance; a conditional update in the database decides which
instance does a given piece of work, so it happens once however many instances run."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from bot.config import Config
from bot.router import CommandTable
from handlers.tasks import queue_cards
from store import tasks as task_store
from store.db import Database
from store.models import utcnow

log = logging.getLogger(__name__)


async def send_due_reminders(db: Database, commands: CommandTable, config: Config) -> int:
    """Remind members who have not shared, once per task, a configured time before its deadline."""
    reminded = 0
    horizon = utcnow() + timedelta(hours=config.tasks.remind_before_hours)
    async with db.session() as session:
        due = [task.id for task in await task_store.tasks_due_for_auto_reminder(session, horizon)]
    for task_id in due:
        async with db.session() as session:
            # A card that arrived minutes ago needs no reminder yet: wait (the next tick looks again).
            members = await task_store.unshared_recipients(
                session, task_id, sent_before=utcnow() - timedelta(hours=config.tasks.reminder_min_age_hours))
            if not members or not await task_store.claim_auto_reminder(session, task_id):
                continue  # nobody to remind yet, or another instance took it
            task = await task_store.get_task(session, task_id)
            queued = await queue_cards(session, task, members, commands, config.server.timezone,
                                       reminder=True, automatic=True, now=utcnow())
        log.info("automatic reminder for task %d queued for %d member(s)", task_id, queued)
        reminded += queued
    return reminded


async def run_periodically(name: str, job: Callable[[], object], interval: float, stop: asyncio.Event) -> None:
    """Run `job` every `interval` until `stop` is set; a stop never interrupts a run half-way."""
    while not stop.is_set():
        try:
            await job()  # type: ignore[misc]
        except Exception:
            log.exception("job %s failed; it runs again in %.0f s", name, interval)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
