"""What every inference route (legacy, V1, V2) does around its protocol's own work.

POST only (405 with `Allow: POST` otherwise); a JSON body (415 otherwise, unless the route
reads the V2 binary extension); the body read once under the cap (413); an in-flight slot
(503 beyond `max_inflight`); the model ready (503); the exact-body memo; the route's
`handle(scope, body)`, which answers; the answer sent once; the request timed, its client
errors logged through the one rate-limited client-error logger.

The memo remembers whole 200 answers by exact request body (up to `MEMO_MAX_BODY_BYTES`,
within the cache TTL), for the routes whose answer depends on the body alone (legacy and
V1; a V2 answer carries a fresh id): a body byte for byte one answered before is
answered before any parsing. Any other request, however close, goes the whole way and its
rows hit the per-row cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import numpy as np
import orjson
from starlette.types import Receive, Scope, Send

from predictor.admission import Admission
from predictor.cache.tiers import LRU
from predictor.logs import REQUEST_ID, log_client_error
from predictor.metrics import CACHE_HITS
from predictor.model.explain import NotExplainable
from predictor.model.housing import Decoded, HousingModel, Route
from predictor.protocol.json_body import InvalidJson
from predictor.protocol.schema import InvalidRows
from predictor.rest.answers import Answer, error_answer, send_answer
from predictor.rest.bodies import (
    NOT_JSON,
    BodyTooLarge,
    ClientGone,
    header,
    is_json,
    off_loop,
    read_body,
)

# Bodies up to this size (a few dozen rows) are remembered whole by the response memo.
MEMO_MAX_BODY_BYTES: Final = 4096
INFERENCE_HEADER: Final = b"inference-header-content-length"
POST_ONLY: Final = [(b"allow", b"POST")]

logger: Final = logging.getLogger("kserve.predictor.rest.routes")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Remembered:
    """A 200 answer remembered for the exact request body that produced it."""

    body: bytes
    rows: int


Memo = LRU[tuple[str, str, bytes], Remembered]
Handle = Callable[[Scope, bytes], Awaitable[Answer]]


def response_memo(max_entries: int, ttl_seconds: float) -> Memo | None:
    """The exact-body memo of answers; None when `max_entries` is 0."""
    return LRU(max_entries, ttl_seconds) if max_entries > 0 else None


def prediction_headers(version: str, cache_status: str) -> list[tuple[bytes, bytes]]:
    """`X-Model-Version` and `X-Cache` (HIT, PARTIAL, MISS) of a prediction."""
    return [(b"x-model-version", version.encode()), (b"x-cache", cache_status.encode())]


async def decode_body(
    decode: Callable[[bytes, Any], T], body: bytes, argument: Any, offload_body_bytes: int
) -> T:
    """`decode(body, argument)`: on the event loop, or in the large-body pool for bodies
    above `offload_body_bytes` (predictor.rest.bodies)."""
    if len(body) <= offload_body_bytes:
        return decode(body, argument)
    return await off_loop(decode, body, argument)


def rows_handler(
    model: HousingModel,
    route: Route,
    rows: Callable[[bytes, int], np.ndarray],
    refuse_rows: Callable[[InvalidRows], Answer],
    offload_body_bytes: int,
    explain: bool,
) -> Handle:
    """The `handle` of a route whose body is rows (legacy, V1): decoded by `rows`, bad rows
    answered by `refuse_rows` (each route has its status and shape), predicted or explained,
    encoded once."""

    async def handle(scope: Scope, body: bytes) -> Answer:
        try:
            matrix = await decode_body(rows, body, model.max_batch_size, offload_body_bytes)
        except InvalidJson as e:
            return error_answer(400, f"malformed JSON: {e}")
        except InvalidRows as e:
            return refuse_rows(e)
        try:
            answer, cache = await model.run(Decoded(route, matrix, explain=explain))
        except NotExplainable as e:
            return error_answer(501, e.reason)
        headers = prediction_headers(model.version, cache)
        return Answer(200, orjson.dumps(answer), headers, rows=len(matrix))

    return handle


class InferenceRoute:
    """One inference route: see the module docstring."""

    methods = ("POST",)

    def __init__(
        self,
        name: str,
        handle: Handle,
        model: HousingModel,
        admission: Admission,
        max_body_bytes: int,
        memo: Memo | None = None,
        binary_extension: bool = False,
    ) -> None:
        self.name = name
        self._handle = handle
        self._model = model
        self._admission = admission
        self._max_body_bytes = max_body_bytes
        self._memo = memo
        self._binary_extension = binary_extension
        self._memo_hits = CACHE_HITS.labels(tier="response")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method != "POST":
            answer = error_answer(405, "use POST", POST_ONLY)
            self._log(scope, answer)
            await send_answer(send, answer, head=method == "HEAD")
            return
        request_id = header(scope, b"x-request-id") or header(scope, b"x-b3-traceid")
        if request_id:
            REQUEST_ID.set(request_id.decode("latin-1"))
        started = time.perf_counter()
        admission = self._admission
        if not self._accepts(scope):
            answer = error_answer(415, NOT_JSON)
        else:
            try:
                body = await read_body(scope, receive, self._max_body_bytes)
            except ClientGone:
                return
            except BodyTooLarge:
                answer = error_answer(413, f"request body exceeds {self._max_body_bytes} bytes")
            else:
                if admission.enter():
                    try:
                        answer = await self._answer(scope, body)
                        await send_answer(send, answer)
                    finally:
                        admission.leave()
                    self._done(scope, answer, started)
                    return
                answer = admission.shed()
        await send_answer(send, answer)
        self._done(scope, answer, started)

    def _accepts(self, scope: Scope) -> bool:
        if self._binary_extension and header(scope, INFERENCE_HEADER) is not None:
            return True
        return is_json(header(scope, b"content-type"))

    async def _answer(self, scope: Scope, body: bytes) -> Answer:
        model = self._model
        if not model.ready:
            return error_answer(503, f"model {model.name} is not ready")
        memo = self._memo if len(body) <= MEMO_MAX_BODY_BYTES else None
        if memo is None:
            return await self._handled(scope, body)
        key = (self.name, model.version, body)
        remembered = memo.get_many((key,))[0]
        if remembered is not None:
            self._memo_hits.inc(remembered.rows)
            return Answer(200, remembered.body, prediction_headers(model.version, "HIT"))
        answer = await self._handled(scope, body)
        if answer.status == 200:
            memo.put_many({key: Remembered(answer.body, answer.rows)})
        return answer

    async def _handled(self, scope: Scope, body: bytes) -> Answer:
        try:
            return await self._handle(scope, body)
        except Exception:
            logger.exception("%s %s failed", scope["method"], scope["path"])
            return error_answer(500, "internal error: the server could not answer")

    def _done(self, scope: Scope, answer: Answer, started: float) -> None:
        self._admission.observe(self.name, answer.status, time.perf_counter() - started)
        if answer.error is not None:
            self._log(scope, answer)

    def _log(self, scope: Scope, answer: Answer) -> None:
        if answer.status < 500:
            log_client_error(scope["method"], scope["path"], answer.status, answer.error or "")
        else:
            logger.warning(
                "%s %s -> %d: %s", scope["method"], scope["path"], answer.status, answer.error
            )
