"""What visitors read on the web pages (tracked links, the lead form, invite QR codes): Chinese first,
then English, since most visitors read Chinese and none of them has told us their language.
bot/web renders these into assets/pages/message.html and sends them."""
from __future__ import annotations

from dataclasses import dataclass

from store.errors import Refusal


@dataclass(frozen=True)
class PageText:
    title: str
    text: str


LINK_NOT_FOUND = PageText("链接不存在 / Link not found", "这个链接无效，请向分享给您的人确认。This link does not exist.")
CAMPAIGN_ENDED = PageText("活动已结束 / This campaign has ended", "感谢关注，本次活动已经结束。Thank you for your interest.")

FORM_TOO_LONG = PageText("内容太长 / Too much data", "请精简后再提交。Please shorten your entries.")
FORM_UNREADABLE = PageText("无法读取表单 / Cannot read the form", "请返回重试。Please go back and try again.")
FORM_EXPIRED = PageText("页面已过期 / This page has expired", "请刷新页面后重新提交。Please reload the page and submit again.")
FORM_TOO_OFTEN = PageText("提交太频繁 / Too many submissions", "请稍后再试。Please try again later.")

DOWNLOAD_NOW = "下载文件 / Download the file"
DOWNLOAD_EXPIRED = PageText("下载链接已过期 / This download link has expired",
                            "请重新打开分享给您的链接。Please open the link you were given again.")
# The database or Redis did not answer in time (down, restarting, or every connection busy).
UNAVAILABLE = PageText("服务繁忙 / Busy right now", "请稍后刷新重试。Please reload the page in a moment.")
INVITE_INVALID = PageText("邀请码无效 / Invalid invite", "请核对二维码或邀请码。Please check the code.")


def invite_unusable(problem: Refusal | None) -> PageText:
    return PageText("邀请码不可用 / Invite not usable",
                    f"{problem.zh if problem else ''}。{problem.en if problem else ''}.")


def how_to_join(partner_name: str, code: str) -> PageText:
    """Joining happens in WeCom, where the bot knows who the person is: the page says what to send."""
    return PageText(f"加入 {partner_name} / Join {partner_name}",
                    f"请在企业微信中向伙伴助手发送：加入 {code}\nIn WeCom, send this to the partner bot: join {code}")
