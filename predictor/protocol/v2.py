"""V2 (Open Inference Protocol): requests → rows, predictions → answers; REST and gRPC.

A request's rows come as either
- one tensor of shape `[N, 8]` (any name; the features in schema order), or
- one tensor per feature, named by the feature, each of shape `[N]` or `[N, 1]`: what
  MLServer's PandasCodec sends (`content_type: "pd"`), and KServe's sklearnserver reads,
in FP32, FP64 or any integer datatype (INT8 to INT64, UINT8 to UINT64: what NumPy integer arrays
encode to). Over REST the data is JSON (flat or nested) or raw bytes (the binary tensor
extension, predictor.protocol.binary); over gRPC, predictor.protocol.v2_grpc reads the
message. Either way one check turns them into a validated float64 matrix, so a row means
the same thing (same key, same prediction) whatever route and encoding carried it.

The model has two outputs: `predict` (FP64, shape `[N]`), the one answered unless
`outputs` names others, and `treeshap_output` (FP64, `[N, 9]`: each row's 8 TreeSHAP
contributions in feature order, then the base value), named and laid out as Triton's FIL
backend names and lays out its TreeSHAP output, answered only when asked for. Each is
answered as JSON or, when asked, in binary.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson

from predictor.protocol.binary import (
    BadBinaryBody,
    extension_problem,
    sent_in_binary,
    split_binary,
)
from predictor.protocol.json_body import InvalidJson, loads_strict
from predictor.protocol.schema import (
    FEATURES,
    N_FEATURES,
    InvalidRows,
    request_error,
    validate_matrix,
)

INPUT_NAME: Final = "input-0"
OUTPUT_NAME: Final = "predict"
EXPLAIN_OUTPUT: Final = "treeshap_output"
OUTPUTS: Final = (OUTPUT_NAME, EXPLAIN_OUTPUT)
FLOAT_TYPES: Final[dict[str, np.dtype[Any]]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
INT_TYPES: Final[dict[str, np.dtype[Any]]] = {
    name: np.dtype(f"<{kind}{size}")
    for kind, prefix in (("i", "INT"), ("u", "UINT"))
    for size in (1, 2, 4, 8)
    for name in (f"{prefix}{size * 8}",)
}
DATATYPES: Final[dict[str, np.dtype[Any]]] = {**FLOAT_TYPES, **INT_TYPES}
_DATATYPE_NAMES: Final = "INT8..INT64, UINT8..UINT64, FP32 or FP64"
_FEATURE_SET: Final = frozenset(FEATURES)
BINARY_CONTENT_TYPE: Final = b"application/octet-stream"


@dataclass(frozen=True, slots=True)
class Tensor:
    """One input tensor as sent: its values flat, in row-major order."""

    name: str
    shape: list[int]
    datatype: str
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class AnswerSpec:
    """How a V2 request wants its answer: its id, and the output in binary or not."""

    request_id: str | None
    binary: bool
    outputs: tuple[tuple[str, bool], ...] = ((OUTPUT_NAME, False),)
    """The outputs to answer, in order, each in binary or not (REST): those requested, else
    `predict` alone."""

    @property
    def explains(self) -> bool:
        """Whether `treeshap_output` is asked for."""
        return any(name == EXPLAIN_OUTPUT for name, _ in self.outputs)


@dataclass(frozen=True, slots=True)
class RestAnswer:
    """A V2 REST answer: its JSON (or the JSON part of a binary answer) and raw bytes."""

    header: bytes
    tail: bytes | None


# -- REST requests ----------------------------------------------------------------------


def parse_rest(
    body: bytes, binary_header: bytes | None
) -> tuple[dict[str, Any], memoryview | None]:
    """The JSON request (and the raw part of a binary-extension body), outline-checked.

    Raises `InvalidRows` saying what is wrong."""
    try:
        if binary_header is None:
            request, tail = loads_strict(body), None
        else:
            split = split_binary(binary_header, body)
            request, tail = split.request, split.tail
    except InvalidJson as e:
        raise request_error(f"malformed JSON: {e}") from e
    except BadBinaryBody as e:
        raise request_error(str(e)) from e
    problem = outline_problem(request)
    if not problem:
        problem = extension_problem(request, None if tail is None else len(tail))
    if problem:
        raise request_error(problem)
    return request, tail


def rest_rows(
    request: dict[str, Any], tail: memoryview | None, max_rows: int
) -> tuple[np.ndarray, AnswerSpec]:
    """The validated rows of an outline-checked REST request, and how to answer it."""
    binary, outputs = _rest_outputs(request)
    inputs: list[dict[str, Any]] = request["inputs"]
    check_rows(inputs, max_rows)
    offset = 0
    tensors = []
    for tensor in inputs:
        datatype = tensor["datatype"]
        if datatype not in DATATYPES:
            raise bad_datatype(datatype)
        shape: list[int] = tensor["shape"]
        if sent_in_binary(tensor):
            assert tail is not None  # extension_problem checked it
            size: int = tensor["parameters"]["binary_data_size"]
            values = np.frombuffer(tail[offset : offset + size], dtype=DATATYPES[datatype])
            offset += size
        else:
            values = _json_values(tensor["data"], datatype, shape)
        tensors.append(Tensor(tensor["name"], shape, datatype, values))
    return rows_of(tensors), AnswerSpec(request.get("id"), binary, outputs)


def check_rows(inputs: Sequence[Any], max_rows: int) -> None:
    """Refuse a batch over `max_rows` from its shapes alone, before reading any data."""
    for tensor in inputs:
        shape = tensor["shape"] if isinstance(tensor, dict) else list(tensor.shape)
        if shape and isinstance(shape[0], int) and shape[0] > max_rows:
            raise request_error(f"{shape[0]} rows exceed max_batch_size {max_rows}")


def _json_values(data: list[Any], datatype: str, shape: list[int]) -> np.ndarray:
    """A tensor's JSON data (flat, or nested by rows) as a flat array of its datatype."""
    integers = datatype in INT_TYPES
    needed = math.prod(shape)
    if len(data) > needed:  # more items than values: refused without a walk over them
        raise request_error(
            f"input data does not match shape {shape}: the data holds {len(data)} items, "
            f"shape {shape} takes {needed}"
        )
    flat = _flat_numbers(data, integers)
    if flat is None:
        kind = "integers" if integers else "numbers"
        raise request_error(f"input data must hold {kind} only (datatype {datatype})")
    if len(flat) != needed:
        raise request_error(
            f"input data does not match shape {shape}: it holds {len(flat)} values, "
            f"shape {shape} takes {needed}"
        )
    try:
        return np.array(flat, dtype=DATATYPES[datatype])
    except OverflowError as e:
        raise request_error(f"input data out of range for {datatype}: {e}") from e


def _flat_numbers(data: list[Any], integers: bool) -> list[Any] | None:
    """The numbers of a (nested) JSON list in order, or None if it holds anything else
    (booleans included; with `integers`, numbers with a fraction or exponent too)."""
    allowed = (int,) if integers else (int, float)
    if all(type(item) in allowed for item in data):
        return data
    flat: list[Any] = []
    pending = [iter(data)]
    while pending:
        for item in pending[-1]:
            if type(item) is list:
                pending.append(iter(item))
                break
            if type(item) not in allowed:
                return None
            flat.append(item)
        else:
            pending.pop()
    return flat


def outline_problem(body: Any) -> str | None:
    """What is wrong with the outline of a V2 JSON request, if anything.

    Only the envelope and the members' JSON types: the tensors' values are `rows_of`'s.
    """
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        return 'expected a JSON object {"inputs": [...]}'
    problem = _optional_fields_problem(body, "", _REQUEST_OPTIONAL)
    if problem:
        return problem
    for index, tensor in enumerate(body["inputs"]):
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
        if problem:
            return problem
    seen: set[str] = set()
    for index, output in enumerate(body.get("outputs") or []):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            return f"outputs[{index}] must be an object with a string name"
        problem = _optional_fields_problem(output, f"outputs[{index}].", _TENSOR_OPTIONAL)
        if problem:
            return problem
        problem = output_problem(output["name"], seen)
        if problem:
            return problem
    return None


def output_problem(name: str, seen: set[str]) -> str | None:
    """Only `predict` and `treeshap_output` exist; each named at most once."""
    if name not in OUTPUTS:
        return (
            f"unknown output {name!r}: this model's outputs are {OUTPUT_NAME!r} and "
            f"{EXPLAIN_OUTPUT!r}"
        )
    if name in seen:
        return f"output {name!r} is requested twice"
    seen.add(name)
    return None


def _optional_fields_problem(
    value: dict[str, Any], where: str, fields: tuple[tuple[str, type], ...]
) -> str | None:
    for key, kind in fields:
        member = value.get(key)
        if member is not None and not isinstance(member, kind):
            return f"{where}{key} must be {_KIND_NAMES[kind]}"
    parameters = value.get("parameters")
    if isinstance(parameters, dict) and not all(
        isinstance(v, str | int | float) for v in parameters.values()
    ):
        return f"{where}parameters must map names to strings, numbers or booleans"
    return None


# The V2 request's members and their JSON types.
_TENSOR_FIELDS: Final = (("name", str), ("shape", list), ("datatype", str), ("data", list))
_TENSOR_OPTIONAL: Final = (("parameters", dict),)
_REQUEST_OPTIONAL: Final = (("id", str), ("parameters", dict), ("outputs", list))
_KIND_NAMES: Final[dict[type, str]] = {str: "a string", list: "an array", dict: "an object"}


def _rest_outputs(request: dict[str, Any]) -> tuple[bool, tuple[tuple[str, bool], ...]]:
    """The request-wide binary default (`binary_data_output`), and each output to answer
    in binary or JSON: a requested output's `binary_data` overrides the default (the
    binary tensor extension)."""
    binary = (request.get("parameters") or {}).get("binary_data_output") is True
    outputs = tuple(
        (output["name"], _binary_asked(output, binary)) for output in request.get("outputs") or ()
    )
    return binary, outputs or ((OUTPUT_NAME, binary),)


def _binary_asked(output: dict[str, Any], default: bool) -> bool:
    asked = (output.get("parameters") or {}).get("binary_data")
    return default if asked is None else asked is True


# -- gRPC requests as kserve decodes them ------------------------------------------------


def rows_of(tensors: list[Tensor]) -> np.ndarray:
    """The validated float64 rows of one `[N, 8]` tensor or one tensor per feature."""
    if len(tensors) > 1 and all(t.name in _FEATURE_SET for t in tensors):
        return _rows_of_columns(tensors)
    if len(tensors) != 1:
        raise request_error(
            f"expected exactly one input tensor, got {len(tensors)} (or one per feature, "
            f"named {', '.join(FEATURES)})"
        )
    tensor = tensors[0]
    shape = tensor.shape
    if len(shape) != 2 or shape[1] != N_FEATURES or shape[0] < 0:
        raise request_error(f"input shape must be [N, {N_FEATURES}], got {shape}")
    return validate_matrix(_as_float64(tensor).reshape(shape))


def _rows_of_columns(tensors: list[Tensor]) -> np.ndarray:
    """One tensor per feature, each `[N]` or `[N, 1]` (MLServer's PandasCodec)."""
    by_name = {t.name: t for t in tensors}
    missing = [name for name in FEATURES if name not in by_name]
    if missing or len(by_name) != len(tensors):
        problem = f"missing {', '.join(missing)}" if missing else "a feature named twice"
        raise request_error(f"one input per feature needs each of the 8 features once: {problem}")
    rows = tensors[0].shape[0] if tensors[0].shape else -1
    for tensor in tensors:
        if tensor.shape not in ([rows], [rows, 1]):
            raise request_error(
                f"input {tensor.name!r} must have shape [N] or [N, 1] like the other "
                f"features (N = {rows}), got {tensor.shape}"
            )
    columns = [_as_float64(by_name[name]) for name in FEATURES]
    return validate_matrix(np.stack(columns, axis=1))


def _as_float64(tensor: Tensor) -> np.ndarray:
    values = tensor.values
    if tensor.datatype == "FP32":
        # Widen each float32 through its shortest decimal, so 8.3252 sent as FP32 is the
        # same row (same key, same prediction) as 8.3252 sent as JSON or FP64.
        return values.astype(np.float32).astype(str).astype(np.float64)
    return values.astype(np.float64)


def bad_datatype(datatype: str) -> InvalidRows:
    return request_error(f"input datatype must be one of {_DATATYPE_NAMES}, got {datatype}")


# -- answers ----------------------------------------------------------------------------


def output_values(
    spec: AnswerSpec, predictions: np.ndarray, treeshap: np.ndarray | None
) -> list[tuple[str, bool, np.ndarray]]:
    """(name, binary, values) of each output to answer, in the requested order."""
    values = {OUTPUT_NAME: predictions, EXPLAIN_OUTPUT: treeshap}
    answered = []
    for name, binary in spec.outputs:
        tensor = values[name]
        assert tensor is not None, f"{name} asked for and not computed"
        answered.append((name, binary, tensor))
    return answered


def rest_answer(
    spec: AnswerSpec,
    predictions: np.ndarray,
    model_name: str,
    version: str,
    treeshap: np.ndarray | None = None,
) -> RestAnswer:
    """The REST answer: JSON, or the binary extension's JSON part and raw FP64 bytes (the
    binary outputs' bytes one after the other, in the order of `outputs`).

    `parameters` is left out rather than null (the protocol's schema types it as an
    object); the id is the request's, or a new one."""
    outputs = []
    tails = []
    for name, binary, values in output_values(spec, predictions, treeshap):
        output: dict[str, Any] = {"name": name, "datatype": "FP64", "shape": list(values.shape)}
        if binary:
            raw = values.astype("<f8").tobytes()
            tails.append(raw)
            output["parameters"] = {"binary_data_size": len(raw)}
        else:
            output["data"] = values.ravel().tolist()
        outputs.append(output)
    answer = {
        "model_name": model_name,
        "model_version": version,
        "id": spec.request_id or str(uuid.uuid4()),
        "outputs": outputs,
    }
    return RestAnswer(orjson.dumps(answer), b"".join(tails) if tails else None)
