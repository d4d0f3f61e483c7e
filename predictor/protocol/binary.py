"""V2 REST's binary tensor extension: a body split in a JSON part and raw tensor bytes.

`Inference-Header-Content-Length: N`: the first N bytes are the JSON request, the rest the
inputs' raw bytes, each input's share given by its `binary_data_size` parameter. Every
number in it is checked (a size that does not match the tensor's shape, a header that is
not a number or points past the body): each such request gets a 400 that says what is
wrong. The extension's output parameters (`binary_data_output` on the request,
`binary_data` on a requested output) must be booleans. Answers in binary are encoded by
predictor.protocol.v2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from predictor.protocol.json_body import InvalidJson, loads_strict

INFERENCE_HEADER: Final = b"inference-header-content-length"
BINARY_SIZE: Final = "binary_data_size"
# Bytes per element of the fixed-size datatypes (BYTES has no fixed size: it is refused).
ITEM_BYTES: Final = {
    "BOOL": 1,
    "UINT8": 1,
    "INT8": 1,
    "UINT16": 2,
    "INT16": 2,
    "FP16": 2,
    "BF16": 2,
    "UINT32": 4,
    "INT32": 4,
    "FP32": 4,
    "UINT64": 8,
    "INT64": 8,
    "FP64": 8,
}


@dataclass(frozen=True)
class BinaryBody:
    """A binary-extension body split in two: the parsed JSON part and the raw bytes."""

    request: Any
    tail: memoryview


class BadBinaryBody(ValueError):
    """The body does not follow the binary tensor extension; the message says how."""


def split_binary(header_value: bytes, body: bytes) -> BinaryBody:
    """The JSON part of a binary-extension body, parsed strictly, and the length of the rest."""
    text = header_value.strip()
    if not text.isdigit():
        raise BadBinaryBody(
            f"Inference-Header-Content-Length must be a non-negative integer, "
            f"got {header_value.decode('latin-1')!r}"
        )
    json_length = int(text)
    if json_length > len(body):
        raise BadBinaryBody(
            f"Inference-Header-Content-Length {json_length} exceeds the body's {len(body)} bytes"
        )
    try:
        request = loads_strict(body[:json_length])
    except InvalidJson as e:
        raise BadBinaryBody(
            f"the first {json_length} bytes (Inference-Header-Content-Length) "
            f"are not a JSON request: {e}"
        ) from e
    return BinaryBody(request, memoryview(body)[json_length:])


def sent_in_binary(tensor: dict[str, Any]) -> bool:
    """Whether an input tensor names its data's size in the raw part of the body."""
    parameters = tensor.get("parameters")
    return isinstance(parameters, dict) and BINARY_SIZE in parameters


def extension_problem(request: dict[str, Any], tail_bytes: int | None) -> str | None:
    """What is wrong with the binary extension's parameters of an outlined V2 request.

    `tail_bytes` is the length of the raw part of a binary-extension body, None for a
    plain JSON body (which then may not name any `binary_data_size`).
    """
    if not isinstance((request.get("parameters") or {}).get("binary_data_output", False), bool):
        return "parameters.binary_data_output must be a boolean"
    for index, output in enumerate(request.get("outputs") or []):
        if not isinstance((output.get("parameters") or {}).get("binary_data", False), bool):
            return f"outputs[{index}].parameters.binary_data must be a boolean"
    expected = 0
    for index, tensor in enumerate(request["inputs"]):
        if not sent_in_binary(tensor):
            continue
        problem, size = _binary_input(f"inputs[{index}]", tensor, tail_bytes)
        if problem:
            return problem
        expected += size
    if tail_bytes is not None and expected != tail_bytes:
        return (
            f"the inputs' binary_data_size add up to {expected} bytes, but {tail_bytes} "
            "follow the JSON part (Inference-Header-Content-Length)"
        )
    return None


def _binary_input(where: str, tensor: dict[str, Any], tail_bytes: int | None) -> tuple[str, int]:
    """A problem with one binary input (or ""), and its size in bytes."""
    size = tensor["parameters"][BINARY_SIZE]
    if tail_bytes is None:
        return (
            f"{where}.parameters.binary_data_size needs the binary tensor extension: "
            "send the Inference-Header-Content-Length header"
        ), 0
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return f"{where}.parameters.binary_data_size must be a non-negative integer", 0
    if "data" in tensor:
        return f"{where} has both data and binary_data_size: send one", 0
    item = ITEM_BYTES.get(tensor["datatype"])
    if item is None:
        return f"{where}: datatype {tensor['datatype']} cannot be sent as binary data here", 0
    needed = math.prod(tensor["shape"]) * item
    if size != needed:
        return (
            f"{where}.parameters.binary_data_size is {size}, but shape {tensor['shape']} of "
            f"{tensor['datatype']} takes {needed} bytes"
        ), 0
    return "", size
