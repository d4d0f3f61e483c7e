"""Admission: the in-flight bound on inference requests, shedding beyond it, and timing.

Beyond `max_inflight` requests in flight, inference routes answer 503 at once with
`Retry-After`, so an overloaded pod sheds load quickly instead of queueing without bound
(Knative's queue-proxy then retries elsewhere). A request takes its slot once its whole
body has arrived, so slow or stalled senders (bounded by
predictor.upstream.uvicorn_protocol) cannot lock others out. Every answered inference
request, 4xx and shed 503s included, is timed in `housing_request_seconds` by route and
status.
"""

from __future__ import annotations

from predictor.metrics import INFLIGHT, REQUEST_SECONDS
from predictor.rest.answers import Answer, error_answer
from predictor.upstream.prometheus_histogram import FastObserver


class Admission:
    """In-flight slots of the inference routes (REST's, and gRPC ModelInfer's), and the REST
    routes' latency histogram."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.inflight = 0
        self._timers: dict[tuple[str, int], FastObserver] = {}
        INFLIGHT.set_function(lambda: self.inflight)

    def enter(self) -> bool:
        """Take a slot; False when every slot is taken (then answer `shed()`)."""
        if self.inflight >= self.max_inflight:
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1

    def shed_message(self) -> str:
        """Why a request finds no slot."""
        return f"overloaded: {self.inflight} requests in flight; retry shortly"

    def shed(self) -> Answer:
        """REST's answer for a request that finds no slot."""
        return error_answer(503, self.shed_message(), [(b"retry-after", b"1")])

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Time one answered request; each (route, status) histogram child looked up once."""
        key = (route, status)
        timer = self._timers.get(key)
        if timer is None:
            timer = self._timers[key] = FastObserver(REQUEST_SECONDS.labels(route, str(status)))
        timer.observe(seconds)
