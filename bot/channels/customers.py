"""A member's WeCom customers (客户联系) for handlers (handlers/context.CustomerContact): `forward N`
asks how many customers the member has; once the forward is committed, bot/forwarding.py creates the
customer mass message (and where allowed a Moments task) with the member as sender; a periodic job
reads back how many customers it reached and whether the Moments post was published. WeCom's answers
become outcomes a handler can speak about."""
from __future__ import annotations

import logging

from bot.channels.api_client import ApiUnavailable
from bot.channels.wecom_api import WeComClient, WeComError
from handlers.context import MassMessage, MomentState

log = logging.getLogger(__name__)

SENT = 1  # get_groupmsg_send_result: 0 unsent, 1 sent, 2 not a friend, 3 already got one today


class WeComCustomers:
    def __init__(self, client: WeComClient) -> None:
        self.client = client

    async def customers(self, sender: str) -> MassMessage:
        """How many customers the sender has ("ready"), or why none can be reached. Only reads."""
        try:
            customers = await self.client.list_customers(sender)
        except WeComError as err:
            return MassMessage(_outcome(err, sender))
        except ApiUnavailable as err:
            log.warning("customers of %s: %s", sender, err)
            return MassMessage("unavailable")
        return MassMessage("ready", reachable=len(customers)) if customers else MassMessage("no_customers")

    async def mass_message(self, sender: str, text: str, title: str, description: str, url: str) -> MassMessage:
        """The sender's customers, then one mass message to them with the link as its attachment."""
        link = {"msgtype": "link", "link": {"title": title, "desc": description, "url": url}}
        try:
            customers = await self.client.list_customers(sender)
            if not customers:
                return MassMessage("no_customers")
            msgid, failed = await self.client.add_msg_template(sender, text, [link], customers)
        except WeComError as err:
            return MassMessage(_outcome(err, sender))
        except ApiUnavailable as err:
            log.warning("customer mass message for %s: %s", sender, err)
            return MassMessage("unavailable")
        return MassMessage("created", msgid, len(customers) - len(failed))

    async def reached(self, msgid: str, sender: str) -> int | None:
        """Customers the mass message reached so far; None when WeCom cannot say now (still
        dispatching, an outage): ask again on the next run."""
        try:
            rows = await self.client.groupmsg_send_result(msgid, sender)
        except WeComError as err:
            if err.errcode != WeComError.dispatching_errcode:
                log.warning("send result of mass message %s: %s", msgid, err)
            return None
        except ApiUnavailable as err:
            log.warning("send result of mass message %s: %s", msgid, err)
            return None
        return sum(1 for row in rows if row.get("status") == SENT)

    async def moment(self, sender: str, text: str, title: str, description: str, url: str) -> str | None:
        """A Moments (客户朋友圈) task only the sender posts, the link as its attachment: its jobid, or
        None when WeCom refused it."""
        link = {"msgtype": "link", "link": {"title": title, "desc": description, "url": url}}
        try:
            return await self.client.add_moment_task([sender], text, [link])
        except (WeComError, ApiUnavailable) as err:
            log.warning("Moments task for %s: %s", sender, err)
            return None

    async def moment_state(self, jobid: str, moment_id: str | None, sender: str) -> MomentState | None:
        """The task's moment_id ("" when it failed or the sender was invalid) and whether the sender
        published it; None when WeCom cannot say now (the task still runs, an outage)."""
        try:
            if not moment_id:
                data = await self.client.moment_task_result(jobid)
                if data.get("status") != 3:
                    return None
                result = data.get("result") or {}
                invalid = (result.get("invalid_sender_list") or {}).get("user_list") or []
                if result.get("errcode", 0) != 0 or sender in invalid or not result.get("moment_id"):
                    return MomentState("")
                moment_id = str(result["moment_id"])
            statuses = await self.client.moment_publish_status(moment_id)
        except (WeComError, ApiUnavailable) as err:
            log.warning("Moments task %s: %s", jobid, err)
            return None
        return MomentState(moment_id, statuses.get(sender) == 1)


def _outcome(err: WeComError, sender: str) -> str:
    if err.no_customer_permission:
        return "no_permission"
    if err.no_customers:
        return "no_customers"
    log.warning("customer contact for %s refused: %s", sender, err)
    return "unavailable"
