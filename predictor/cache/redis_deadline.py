"""A deadline on a Redis round trip that blames Redis, not a busy event loop.

`asyncio.timeout` measures the event loop's clock: when the loop is stalled (a large
batch, a garbage collection, a burst of requests) past a round trip's deadline, the timer
fires in the first iteration after the stall, and on uvloop timers run before the
iteration polls the sockets. A reply that Redis sent in 100 µs, sitting in the socket
since, is then thrown away as a timeout, counted against Redis, and a few such stalls open
the circuit breaker: the shared tier turned itself off because of the server's own load.

Here the deadline looks at how late its own timer fired. A timer that fires on time means
the loop was free to read the socket until the deadline, so a missing reply is Redis's (or
the network's) delay: the round trip is cancelled. A timer that fires late means the loop
was busy and the reply may be waiting unread: the deadline moves `GRACE_SECONDS` on, which
lets the loop poll its sockets and read what arrived meanwhile (at most `MAX_EXTENSIONS`
times, so on a loop that stays busy a Redis that really hangs is still given up on within
the timeout plus a few graces and the stalls themselves).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

MAX_EXTENSIONS: Final = 3
GRACE_SECONDS: Final = 0.005
# libuv timers have millisecond resolution: a timer up to about 1 ms late is on time.
ON_TIME_SECONDS: Final = 0.002


class RedisDeadline:
    """Cancels `future` (a round trip) once Redis has had `seconds` of loop time to answer
    and has not."""

    __slots__ = ("_due", "_extensions", "_future", "_handle", "_loop", "expired")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], seconds: float
    ) -> None:
        self._loop = loop
        self._future = future
        self._extensions = 0
        self.expired = False
        """True once the deadline cancelled the future (a timeout, not another cancellation)."""
        self._due = loop.time() + seconds
        self._handle = loop.call_at(self._due, self._fire)

    def cancel(self) -> None:
        """The round trip is over: drop the timer."""
        self._handle.cancel()

    def _fire(self) -> None:
        if self._future.done():
            return
        now = self._loop.time()
        if now - self._due > ON_TIME_SECONDS and self._extensions < MAX_EXTENSIONS:
            self._extensions += 1
            self._due = now + GRACE_SECONDS
            self._handle = self._loop.call_at(self._due, self._fire)
            return
        self.expired = True
        self._future.cancel()
