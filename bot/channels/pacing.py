"""Pacing of calls WeCom limits per company: every instance takes its turn from one shared sliding
window (Redis when configured, this process otherwise), so the bot stays under the limit instead of
being refused — a refused minute limit blocks that API for 60 s, an hour limit for an hour (DESIGN §10)."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.channels.api_client import ApiUnavailable
from store.redis import SharedKeys

# A turn further off than this is not waited for here: the call fails as transient and the outbox
# tries the message again later, rather than holding a sender for up to an hour.
MAX_WAIT_SECONDS = 10.0
WINDOW_MARGIN, WINDOW_MARGIN_SECONDS = 0.02, 0.1


class PacedOut(ApiUnavailable):
    """The company's limit for this API is used up for longer than a send should wait."""


class CallPacer:
    def __init__(self, shared: SharedKeys, key: str, limits: Sequence[tuple[int, float]], *,
                 max_wait: float = MAX_WAIT_SECONDS) -> None:
        """`limits`: (calls, window seconds) pairs, e.g. [(150_000, 3600), (10_000, 60)]."""
        self.shared = shared
        self.key = key
        # WeCom counts a call when it arrives, we when we ask: one sent earlier may arrive after one
        # sent later. Each window is held a little longer than WeCom's, so that never tips it over.
        self.limits = [(calls, window + max(WINDOW_MARGIN_SECONDS, window * WINDOW_MARGIN)) for calls, window in limits]
        self.max_wait = max_wait
        self.waited = 0.0  # seconds this process has waited for turns, for tests and logs

    async def turn(self) -> None:
        """Return once this call has its slot in every window; PacedOut if that is too far off."""
        while True:
            wait = await self.shared.reserve_in_windows(self.key, self.limits,
                                                        degraded="API call pacing counted in this process")
            if wait <= 0:
                return
            if wait > self.max_wait:
                raise PacedOut(f"{self.key}: the company's call limit is used up for {wait:.0f} s")
            self.waited += wait
            await asyncio.sleep(wait)
