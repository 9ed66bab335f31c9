"""`forward N` in WeCom (DESIGN §11): the handler records the forward (one per chat message) in the
message's own transaction; once that is committed, `send_forwards` creates the customer mass message,
and where allowed the Moments task, exactly as recorded — run by the inbox right after the commit and
by the periodic job for any a crash left pending. A forward is claimed (committed as `sending`) before
WeCom is asked, so it is never created twice; WeCom's answer is recorded after. `read_forward_results`
reads back how many customers each one reached and whether the Moments post was published."""
from __future__ import annotations

import asyncio
import logging

from handlers import notices
from handlers.context import CustomerContact
from handlers.replies import reply_to_payload
from store import forwards
from store import tasks as task_store
from store.db import Database
from store.models import utcnow

log = logging.getLogger(__name__)

RECORD_ATTEMPTS = 3


async def send_forwards(db: Database, customers: CustomerContact, inbox_id: int | None = None) -> int:
    """Create in WeCom the forwards still pending (those one chat message recorded, or every recent
    one); returns how many were created."""
    async with db.session() as session:
        due = await forwards.pending(session, utcnow(), inbox_id)
    created = 0
    for forward_id in due:
        async with db.session() as session:
            job = await forwards.claim_to_send(session, forward_id)
        if job is None:
            continue  # another instance took it
        sent = await customers.mass_message(job.sender, job.text, job.title, job.description, job.url)
        msgid = sent.msgid if sent.outcome == "created" else None
        jobid = await customers.moment(job.sender, job.text, job.title, job.description, job.url) \
            if job.moment and msgid else None
        await _record(db, forward_id, msgid, sent.reachable, jobid, job.sender)
        created += msgid is not None
    return created


async def _record(db: Database, forward_id: int, msgid: str | None, reachable: int, jobid: str | None,
                  sender: str) -> None:
    """WeCom has answered: record it (a few tries, since asking WeCom again is not an option). A
    mass message that could not be created is told to its sender, who was told it would wait for them."""
    for attempt in range(RECORD_ATTEMPTS):
        try:
            async with db.session() as session:
                await forwards.record_sent(session, forward_id, msgid, reachable, jobid)
                if msgid is None:
                    await task_store.queue_messages(session, task_id=None, purpose="notice", rows=[
                        (sender, f"forward:{forward_id}:failed", reply_to_payload(notices.forward_failed()))])
            return
        except Exception:
            if attempt == RECORD_ATTEMPTS - 1:
                log.exception("forward %d: WeCom answered (msgid %s) but it could not be recorded; it stays "
                              "'sending' and is not sent again", forward_id, msgid)
                return
            await asyncio.sleep(0.5 * (attempt + 1))


async def read_forward_results(db: Database, customers: CustomerContact) -> int:
    """How many customers each recent `forward N` reached (WeCom's get_groupmsg_send_result), and
    whether its Moments post was published (get_moment_task_result, get_moment_task), for forwards
    younger than store.forwards.CHECK_DAYS; counts only grow, so instances may overlap."""
    now = utcnow()
    async with db.session() as session:
        due = await forwards.forwards_to_check(session, now)
        moments = await forwards.moments_to_check(session, now)
    updated = 0
    for forward_id, msgid, sender in due:
        reached = await customers.reached(msgid, sender)
        if reached is None:
            continue  # still being dispatched, or WeCom unreachable: the next run asks again
        async with db.session() as session:
            await forwards.record_reached(session, forward_id, reached, now)
        updated += 1
    for forward_id, jobid, moment_id, sender in moments:
        state = await customers.moment_state(jobid, moment_id, sender)
        if state is None:
            continue
        async with db.session() as session:
            await forwards.record_moment(session, forward_id, state.moment_id, state.published, now)
    return updated
