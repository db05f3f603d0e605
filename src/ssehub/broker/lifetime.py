"""How long a subscription lives: ``max_connection_age`` and ``expires_at``.

Long-lived connections pin clients to one hub process and keep proxies' connection tables full;
ending them after a maximum age (with jitter, so they do not all reconnect in the same second)
spreads clients across processes after deploys. A stream opened with a credential must end when
the credential does (the hub passes a token's ``exp`` as ``expires_at``). Clients resume exactly
with ``Last-Event-ID`` either way.

The deadlines are calls on the broker's one :class:`~ssehub._deadlines.Deadlines` task: no task
per subscription, no polling. They hold subscription states, not the handles consumers hold, so
an abandoned subscription's handle can still be garbage collected.
"""

from __future__ import annotations

import math
import random
from functools import partial
from typing import TYPE_CHECKING

from ._state import EndReason

if TYPE_CHECKING:
    from .._clock import Clock
    from .._deadlines import Deadlines
    from ._state import SubscriptionState

__all__ = ["Lifetimes"]


class Lifetimes:
    """Ends each subscription at ``expires_at`` (``EXPIRED``) or at
    ``now + max_age * (1 - jitter * U[0, 1))`` (``MAX_AGE``), whichever comes first.

    Args:
        clock: the broker's clock.
        deadlines: the broker's deadline task, on ``clock``.
        max_age: the maximum connection age in seconds, or ``None`` for none.
        jitter: the fraction of ``max_age`` a deadline may come early (``0 <= jitter < 1``).
        rng: the random source for jitter (tests pass a seeded ``random.Random``).
    """

    def __init__(
        self,
        clock: Clock,
        deadlines: Deadlines,
        max_age: float | None,
        jitter: float,
        rng: random.Random | None,
    ) -> None:
        self._clock = clock
        self._deadlines = deadlines
        self._max_age = max_age
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not security

    def start(self, state: SubscriptionState, expires_at: float | None) -> None:
        """Give the subscription ``state`` its deadline, if it has one."""
        when, reason = math.inf, EndReason.MAX_AGE
        if self._max_age is not None:
            jitter = self._jitter * self._rng.random()
            when = self._clock.time() + self._max_age * (1.0 - jitter)
        if expires_at is not None and expires_at <= when:
            when, reason = expires_at, EndReason.EXPIRED
        if when != math.inf:
            state._deadline = self._deadlines.call_at(when, partial(state._end, reason))

    def end(self, state: SubscriptionState) -> None:
        """Forget the deadline of ``state``, which has ended (it may be what ended it)."""
        if state._deadline is not None:
            self._deadlines.cancel(state._deadline)
