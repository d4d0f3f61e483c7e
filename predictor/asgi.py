"""The outermost ASGI layer, in front of kserve's FastAPI stack.

It does three things before kserve's middleware (timing, exception handlers, routing) sees
a request:

- serves the legacy `POST /predict` itself, in plain ASGI: one body read, one strict parse,
  the model's own preprocess → predict → postprocess, one orjson encode. A request whose
  body is byte for byte one answered before (within the cache TTL) is answered from a
  small memo of whole responses, before any parsing: the common shape of repeated traffic,
  and then a cached answer costs little more than the HTTP server does. Any other
  request, however close, goes the whole way and its rows hit the per-row cache;
- caps request bodies (413) on every route, and decodes and checks bodies above
  `offload_body_bytes` off the event loop (predictor.large_bodies);
- bounds the number of inference requests in flight: beyond `max_inflight`, inference
  routes answer 503 at once with `Retry-After`, so an overloaded pod sheds load quickly
  instead of queueing without bound (Knative's queue-proxy then retries elsewhere). A
  request takes its slot once its whole body has arrived, so slow or stalled senders
  (bounded by predictor.limits) cannot lock others out;
- times every answered inference request, 4xx and shed 503s included, in
  `housing_request_seconds`.

It also answers the original service's `GET /health` (`predictor.routes.health`), maps the
served model version's V2 routes onto the unversioned ones (`predictor.versions`), and
checks V2's binary tensor extension (`predictor.v2`).

Everything else (V1, V2, health, metadata, metrics) goes to kserve's app unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from timing_asgi import TimingMiddleware

from predictor.cache import LRU
from predictor.json_body import InvalidJson, loads_strict
from predictor.large_bodies import off_loop, size_problem
from predictor.logs import REQUEST_ID
from predictor.metrics import CACHE_HITS, INFLIGHT, REQUEST_SECONDS
from predictor.model import V1_OUTLINE, HousingModel, LegacyRequest, v1_instances
from predictor.routes import health
from predictor.schema import InvalidRows
from predictor.v2 import (
    INFERENCE_HEADER,
    BadBinaryBody,
    binary_answer,
    extension_problem,
    sent_in_binary,
    split_binary,
    with_binary_content_type,
)
from predictor.versions import UnservedVersion, unversioned_path

LEGACY_PATH: Final = "/predict"
_NOT_JSON: Final = "unsupported Content-Type: send application/json (or no Content-Type)"
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


# Bodies up to this size (a few dozen rows) are remembered whole by the response memo.
MEMO_MAX_BODY_BYTES: Final = 4096


class BodyTooLarge(Exception):
    pass


class _Overloaded(Exception):
    """The body has arrived and every in-flight slot is taken: answer 503."""


@dataclass(frozen=True, slots=True)
class _Answer:
    """A `/predict` answer remembered for the exact request body that produced it."""

    body: bytes
    rows: int


def _json_start(status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> Message:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(_json_start(status, body, headers))
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, content: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send(send, status, orjson.dumps(content), headers or [])


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


# What `curl -d` declares unless told otherwise; KServe's own docs send JSON that way.
_CURL_DEFAULT: Final = b"application/x-www-form-urlencoded"


def _is_json(content_type: bytes | None) -> bool:
    """Whether a body of this declared type is read as JSON.

    No Content-Type is JSON, as FastAPI and kserve read it: k6's `http.post` with a string
    body and tritonclient's all-JSON requests send none. So is curl's `-d` default, which
    no JSON API could mean literally (a body that is no JSON still gets a 400 saying so).
    """
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return (
        media_type == b"application/json"
        or media_type.endswith(b"+json")
        or media_type == _CURL_DEFAULT
    )


def _with_content_type(
    headers: list[tuple[bytes, bytes]], content_type: bytes
) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k != b"content-type"]
    return [*kept, (b"content-type", content_type)]


def outline_problem(path: str, body: Any) -> str | None:
    """What is wrong with the outline of a V1 or V2 JSON body, if anything.

    Only the envelope: the rows and tensors themselves are the model's to validate.
    """
    if path.endswith(":predict"):
        return V1_OUTLINE if v1_instances(body) is None else None
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        return 'expected a JSON object {"inputs": [...]}'
    problem = _optional_fields_problem(body, "", _REQUEST_OPTIONAL)
    if problem:
        return problem
    for index, tensor in enumerate(body["inputs"]):
        if problem:
            break
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            return f"{where} must be an object"
        for key, kind in _TENSOR_FIELDS:
            if key == "data" and sent_in_binary(tensor):
                continue
            if not isinstance(tensor.get(key), kind):
                return f"{where}.{key} is missing or not {_KIND_NAMES[kind]}"
        shape = tensor["shape"]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            return f"{where}.shape must hold non-negative integers, got {shape}"
        problem = _optional_fields_problem(tensor, f"{where}.", _TENSOR_OPTIONAL)
    for index, output in enumerate(body.get("outputs") or []):
        if problem:
            break
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            return f"outputs[{index}] must be an object with a string name"
        problem = _optional_fields_problem(output, f"outputs[{index}].", _TENSOR_OPTIONAL)
    return problem


def checked_body(
    path: str, body: bytes, binary_header: bytes | None, max_rows: int | None = None
) -> tuple[Any, str | None]:
    """A V1 or V2 body parsed, and what is wrong with it: its JSON (or binary extension),
    its outline, and (given `max_rows`, for large bodies checked off the event loop, see
    predictor.large_bodies) its size and numbers."""
    request: Any = None
    try:
        if binary_header is None:
            request, tail_bytes = loads_strict(body), None
        else:
            split = split_binary(binary_header, body)
            request, tail_bytes = split.request, split.tail_bytes
        problem = outline_problem(path, request)
        if path.endswith("/infer") and not problem:
            problem = extension_problem(request, tail_bytes)
    except InvalidJson as e:
        problem = f"malformed JSON: {e}"
    except BadBinaryBody as e:
        problem = str(e)
    if problem is None and max_rows is not None:
        problem = size_problem(path, request, max_rows)
    return request, problem


def _optional_fields_problem(
    value: dict[str, Any], where: str, fields: tuple[tuple[str, type], ...]
) -> str | None:
    for key, kind in fields:
        member = value.get(key)
        if member is not None and not isinstance(member, kind):
            return f"{where}{key} must be {_KIND_NAMES[kind]}"
    if not _scalar_values(value.get("parameters")):
        return f"{where}parameters must map names to strings, numbers or booleans"
    return None


def _scalar_values(parameters: Any) -> bool:
    return not isinstance(parameters, dict) or all(
        isinstance(v, str | int | float) for v in parameters.values()
    )


# The V2 (Open Inference Protocol) request's members and their JSON types.
_TENSOR_FIELDS: Final = (("name", str), ("shape", list), ("datatype", str), ("data", list))
_TENSOR_OPTIONAL: Final = (("parameters", dict),)
_REQUEST_OPTIONAL: Final = (("id", str), ("parameters", dict), ("outputs", list))
_KIND_NAMES: Final[dict[type, str]] = {str: "a string", list: "an array", dict: "an object"}


def _is_inference(scope: Scope) -> bool:
    path: str = scope["path"]
    return scope["method"] == "POST" and (
        path == LEGACY_PATH or path.endswith(":predict") or path.endswith("/infer")
    )


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body, or `BodyTooLarge` as soon as it exceeds `max_bytes`."""
    declared = _header(scope, b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            raise BodyTooLarge if size > max_bytes else ConnectionAbortedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class PredictorASGI:
    """See the module docstring."""

    def __init__(
        self,
        inner: ASGIApp,
        model: HousingModel,
        max_body_bytes: int,
        max_inflight: int,
        memo: LRU[bytes, _Answer] | None = None,
        offload_body_bytes: int = 64 * 1024,
    ) -> None:
        self.inner = inner
        self.offload_body_bytes = offload_body_bytes
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.max_inflight = max_inflight
        self.inflight = 0
        self._memo = memo
        self._memo_hits = CACHE_HITS.labels(tier="response")
        self._too_large = f"request body exceeds {max_body_bytes} bytes"
        self._timers: dict[tuple[str, int], Any] = {}
        INFLIGHT.set_function(lambda: self.inflight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "/versions/" in scope["path"]:
            try:
                scope = unversioned_path(scope, self.model.name, self.model.version)
            except UnservedVersion as e:
                await send_json(send, 404, {"error": str(e)})
                return
        if scope["type"] != "http" or not _is_inference(scope):
            if scope["type"] == "http" and scope["path"] == LEGACY_PATH:
                await send_json(send, 405, {"error": "use POST"}, [(b"allow", b"POST")])
                return
            if scope["type"] == "http" and scope["path"] == health.PATH:
                await health.answer(scope, send, self.model.ready)
                return
            await self.inner(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or _header(scope, b"x-b3-traceid")
        if request_id:
            REQUEST_ID.set(request_id.decode("latin-1"))
        started = time.perf_counter()
        status: int | None = None  # None: the client went away before any answer
        admitted = False

        async def admitting_receive() -> Message:
            """The body's last chunk takes the in-flight slot, or is refused with 503: a
            client still sending (or stalled) holds no slot."""
            nonlocal admitted
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                if self.inflight >= self.max_inflight:
                    raise _Overloaded
                self.inflight += 1
                admitted = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path: str = scope["path"]
        try:
            if path == LEGACY_PATH:
                await self._legacy(scope, admitting_receive, tracking_send)
            else:
                await self._capped(scope, admitting_receive, tracking_send)
        except _Overloaded:
            await self._shed(tracking_send)
        except BaseException:
            status = status or 500  # what uvicorn answers when the app dies without answering
            raise
        finally:
            if admitted:
                self.inflight -= 1
            if status is not None:
                route = (
                    "legacy" if path == LEGACY_PATH else "v2" if path.startswith("/v2/") else "v1"
                )
                self._timer(route, status).observe(time.perf_counter() - started)

    async def _shed(self, send: Send) -> None:
        await send_json(
            send,
            503,
            {"error": f"overloaded: {self.inflight} requests in flight; retry shortly"},
            [(b"retry-after", b"1")],
        )

    def _timer(self, route: str, status: int) -> Any:
        """The latency histogram's child for (route, status), looked up once each."""
        key = (route, status)
        timer = self._timers.get(key)
        if timer is None:
            timer = self._timers[key] = REQUEST_SECONDS.labels(route, str(status))
        return timer

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The request body; None once answered with 413, or when the client went away."""
        try:
            return await read_body(scope, receive, self.max_body_bytes)
        except BodyTooLarge:
            await send_json(send, 413, {"error": self._too_large})
        except ConnectionAbortedError:
            pass
        return None

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """V1 and V2: read (and cap) the body, check it, pass it on to kserve.

        JSON bodies are parsed strictly here and their outline checked, so that every
        malformed request gets one kind of answer (`400 {"error": ...}`) with a plain
        message, rather than whatever kserve's or FastAPI's layers would say. V2's binary
        tensor extension (`inference-header-content-length`, whatever the Content-Type)
        is checked likewise (`predictor.v2`) and goes to kserve as the bytes it decodes.
        """
        path: str = scope["path"]
        v2 = path.endswith("/infer")
        binary_header = _header(scope, INFERENCE_HEADER) if v2 else None
        if binary_header is None and not _is_json(_header(scope, b"content-type")):
            await send_json(send, 415, {"error": _NOT_JSON})
            return
        body = await self._body(scope, receive, send)
        if body is None:
            return
        if len(body) <= self.offload_body_bytes:
            request, problem = checked_body(path, body, binary_header)
        else:
            request, problem = await off_loop(
                checked_body, path, body, binary_header, self.model.max_batch_size
            )
        if problem:
            await send_json(send, 400, {"error": problem})
            return
        # kserve compares the whole header with "application/json"; FastAPI hands a body
        # of another type to kserve's V2 route as bytes, for the binary extension.
        content_type = b"application/json" if binary_header is None else b"application/octet-stream"
        scope = {**scope, "headers": _with_content_type(scope["headers"], content_type)}
        if v2 and binary_answer(request):
            send = with_binary_content_type(send)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:  # kserve never reads twice; a disconnect is what a second read sees
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.inner(scope, replay, send)

    async def _legacy(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_json(_header(scope, b"content-type")):
            await send_json(send, 415, {"error": _NOT_JSON})
            return
        body = await self._body(scope, receive, send)
        if body is None:
            return
        model = self.model
        if not model.ready:
            await send_json(send, 503, {"error": f"model {model.name} is not ready"})
            return
        memo = self._memo if len(body) <= MEMO_MAX_BODY_BYTES else None
        if memo is not None:
            answer = memo.get_many((body,))[0]
            if answer is not None:
                self._memo_hits.inc(answer.rows)
                await _send(send, 200, answer.body, self._memo_headers())
                return
        try:
            items = (
                loads_strict(body)
                if len(body) <= self.offload_body_bytes
                else await off_loop(loads_strict, body)
            )
        except InvalidJson as e:
            await send_json(send, 400, {"error": f"malformed JSON: {e}"})
            return
        try:
            response, headers = await model.run(LegacyRequest(items))
        except InvalidRows as e:
            await send_json(send, 422, {"error": str(e), "detail": _error_detail(e)})
            return
        encoded = orjson.dumps(response)
        if memo is not None:
            memo.put_many({body: _Answer(encoded, len(response["prediction"]))})
        await _send(send, 200, encoded, [(k.encode(), v.encode()) for k, v in headers.items()])

    def _memo_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-model-version", self.model.version.encode()), (b"x-cache", b"HIT")]


def _error_detail(error: InvalidRows) -> list[dict[str, Any]]:
    """FastAPI-style `detail`: where each problem is (`["body", index, field]`) and what."""
    detail = []
    for err in error.errors:
        loc: list[str | int] = ["body"]
        if err.index is not None:
            loc.append(err.index)
        if err.field:
            loc.append(err.field)
        detail.append({"loc": loc, "msg": err.message})
    return detail


def install(
    app: Any,
    model: HousingModel,
    max_body_bytes: int,
    max_inflight: int,
    memo: LRU[bytes, _Answer] | None = None,
    offload_body_bytes: int = 64 * 1024,
) -> Callable[[], ASGIApp]:
    """Put `PredictorASGI` in front of the app's middleware stack.

    kserve adds its middleware and routes to its module-level FastAPI app when the server
    starts, and Starlette builds the middleware stack on the first request; wrapping the
    stack builder is how this layer ends up outermost without re-implementing kserve's
    ModelServer. kserve's timing middleware (a `getrusage` call and two formatted log lines
    per request) is dropped while its trace logger would discard those lines anyway.
    Returns the builder, for tests.
    """
    build_inner: Callable[[], ASGIApp] = app.build_middleware_stack

    def build() -> ASGIApp:
        if not logging.getLogger("kserve.trace").isEnabledFor(logging.INFO):
            app.user_middleware = [m for m in app.user_middleware if m.cls is not TimingMiddleware]
        return PredictorASGI(
            build_inner(), model, max_body_bytes, max_inflight, memo, offload_body_bytes
        )

    app.build_middleware_stack = build
    return build


def response_memo(max_entries: int, ttl_seconds: float) -> LRU[bytes, _Answer] | None:
    """The exact-body memo of `/predict` answers; None when `max_entries` is 0."""
    return LRU(max_entries, ttl_seconds) if max_entries > 0 else None
