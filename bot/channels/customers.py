"""A member's WeCom customers (客户联系) for handlers (handlers/context.CustomerContact): `forward N`
creates a customer mass message with the member as sender; a periodic job reads back how many
customers it reached. WeCom's answers become outcomes a handler can speak about."""
from __future__ import annotations

import logging

from bot.channels.api_client import ApiUnavailable
from bot.channels.wecom_api import WeComClient, WeComError
from handlers.context import MassMessage

log = logging.getLogger(__name__)

SENT = 1  # get_groupmsg_send_result: 0 unsent, 1 sent, 2 not a friend, 3 already got one today


class WeComCustomers:
    def __init__(self, client: WeComClient) -> None:
        self.client = client

    async def mass_message(self, sender: str, text: str, title: str, description: str, url: str) -> MassMessage:
        """The sender's customers, then one mass message to them with the link as its attachment."""
        link = {"msgtype": "link", "link": {"title": title, "desc": description, "url": url}}
        try:
            customers = await self.client.list_customers(sender)
            if not customers:
                return MassMessage("no_customers")
            msgid, failed = await self.client.add_msg_template(sender, text, [link], customers)
        except WeComError as err:
            if err.no_customer_permission:
                return MassMessage("no_permission")
            if err.no_customers:
                return MassMessage("no_customers")
            log.warning("customer mass message for %s refused: %s", sender, err)
            return MassMessage("unavailable")
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
