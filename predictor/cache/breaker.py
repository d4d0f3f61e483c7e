"""A circuit breaker, so that a dead or hung Redis costs one short timeout, not one per request.

    CLOSED ──(N consecutive failures)──▶ OPEN ──(cool-down over)──▶ HALF_OPEN
       ▲                                  ▲                              │
       └────────(probe succeeds)──────────┼──────────────────────────────┤
                                          └──────(probe fails)───────────┘

While open, callers skip Redis entirely. After the cool-down one call (the probe) goes
through; its success closes the breaker, its failure opens it for another cool-down. A
probe that never reports (its request was cancelled) does not wedge the breaker: after
another cool-down the next call becomes the probe.

Only outcomes that belong to the current state move the breaker. `allow` hands each call
a `Ticket` naming the epoch it started in (every change of state starts a new epoch);
an outcome reported with a ticket of an earlier epoch is ignored. So under load, the
late success of a call that started before the breaker opened cannot close it again, the
dozens of calls failing at once when Redis hangs open it once, and a lost probe's late
answer cannot overrule the probe that replaced it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum
from typing import NewType

Ticket = NewType("Ticket", int)
"""What `allow` hands a call: the epoch it started in, to report its outcome with."""


class BreakerState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Counts consecutive failures; not thread-safe (used from the event loop only)."""

    def __init__(
        self,
        failure_threshold: int,
        cooldown_seconds: float,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds <= 0:
            raise ValueError("cooldown_seconds must be positive")
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._on_change = on_change
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._failures = 0
        self._blocked_until = 0.0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def cooldown_seconds(self) -> float:
        return self._cooldown

    def skipping(self) -> bool:
        """True while callers skip Redis (open in its cool-down, or a probe in flight);
        unlike `allow`, it hands out nothing and changes nothing."""
        return self._state is not BreakerState.CLOSED and self._clock() < self._blocked_until

    def allow(self) -> Ticket | None:
        """A ticket if a call may go through now (past an open cool-down, this call is the
        probe), else None."""
        if self._state is BreakerState.CLOSED:
            return Ticket(self._epoch)
        now = self._clock()
        if now < self._blocked_until:
            return None
        self._blocked_until = now + self._cooldown
        # A new epoch even when already half-open: a lost probe's answer no longer counts.
        self._set(BreakerState.HALF_OPEN)
        return Ticket(self._epoch)

    def succeeded(self, ticket: Ticket) -> None:
        if ticket != self._epoch:
            return
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def failed(self, ticket: Ticket) -> None:
        if ticket != self._epoch:
            return
        self._failures += 1
        if self._state is not BreakerState.CLOSED or self._failures >= self._threshold:
            self.trip()

    def trip(self) -> None:
        """Open now, for one cool-down (a failed probe, or Redis known to be down)."""
        self._blocked_until = self._clock() + self._cooldown
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        old, self._state = self._state, state
        self._epoch += 1
        self._failures = 0
        if old is not state and self._on_change is not None:
            self._on_change(old, state)
