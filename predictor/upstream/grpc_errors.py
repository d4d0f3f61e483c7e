"""The exception grpcio logs when an answer cannot be sent, named for predictor.logs.

When a client goes away before its answer is sent, grpcio's aio server logs the failed
send at ERROR with a traceback (`ExecuteBatchError`, from its private Cython module), once
per call. That is the client's doing: predictor.logs makes it one short, rate-limited
WARNING line (tests/test_grpc_hostile.py drives it with a client that leaves mid-answer).
"""

from __future__ import annotations

from typing import Final

from grpc._cython.cygrpc import ExecuteBatchError

SEND_FAILURES: Final[tuple[type[BaseException], ...]] = (ExecuteBatchError,)


def check_upstream() -> None:
    """What this module relies on: grpcio still has this exception, an `Exception`."""
    assert issubclass(ExecuteBatchError, Exception), "grpc._cython.cygrpc.ExecuteBatchError"
