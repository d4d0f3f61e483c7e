"""V2 over gRPC: a `ModelInferRequest` → rows, predictions → a `ModelInferResponse`.

The protobuf messages are read and written directly, without kserve's `InferRequest` and
`InferResponse` in between; the checks are predictor.protocol.v2's, so a gRPC request
means what the same tensors mean over REST (same rows, same keys, same predictions).

A tensor's values come either typed, in the one `contents` field its datatype uses
(`fp64_contents` for FP64, `int_contents` for INT8 to INT32, ...), or raw, one
`raw_input_contents` entry per input in little-endian bytes; raw inputs get raw outputs
(`raw_output_contents`, each output's `binary_data_size` in its parameters), as kserve and
Triton answer them. A tensor with values in another `contents` field than its datatype's,
or in two, is refused: kserve read only its datatype's field and ignored the rest.

The answer's `id` is the request's; a request without one gets a fresh UUID-shaped id, as
kserve gave (`ids`: a random prefix per process and a counter, not a `uuid4()` per call).
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterator
from typing import Final

import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from predictor.protocol.binary import BINARY_SIZE
from predictor.protocol.schema import request_error
from predictor.protocol.v2 import (
    DATATYPES,
    OUTPUT_NAME,
    AnswerSpec,
    Tensor,
    bad_datatype,
    check_rows,
    output_problem,
    output_values,
    rows_of,
)

# The `InferTensorContents` field each datatype's values travel in (the protocol's table).
CONTENTS: Final[dict[str, str]] = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
}
assert CONTENTS.keys() == DATATYPES.keys()


def _ids() -> Iterator[str]:
    """UUID-shaped ids (version 4 layout): 20 random hex digits per process, 12 counted."""
    prefix = str(uuid.uuid4())[:24]
    return (f"{prefix}{n:012x}" for n in itertools.count())


ids: Final = _ids()


def request_rows(request: pb.ModelInferRequest, max_rows: int) -> tuple[np.ndarray, AnswerSpec]:
    """The validated rows of a ModelInfer request, and how to answer it.

    Raises `InvalidRows` saying what is wrong."""
    requested = request.outputs
    if requested:
        seen: set[str] = set()
        for output in requested:
            problem = output_problem(output.name, seen)
            if problem:
                raise request_error(problem)
    inputs = request.inputs
    raw = request.raw_input_contents
    if raw:
        _check_raw(request)
    check_rows(inputs, max_rows)
    if raw:
        tensors = [_raw_tensor(tensor, data) for tensor, data in zip(inputs, raw, strict=True)]
    else:
        tensors = [_typed_tensor(tensor) for tensor in inputs]
    binary = bool(raw)
    outputs = tuple((output.name, binary) for output in requested) or ((OUTPUT_NAME, binary),)
    return rows_of(tensors), AnswerSpec(request.id or None, binary, outputs)


def _check_raw(request: pb.ModelInferRequest) -> None:
    """Raw contents: one entry per input, and no input with typed contents as well."""
    inputs = request.inputs
    if len(inputs) != len(request.raw_input_contents):
        raise request_error(
            f"the number of inputs ({len(inputs)}) does not match the expected number of raw "
            f"input contents ({len(request.raw_input_contents)}) for model "
            f"'{request.model_name}'."
        )
    for tensor in inputs:
        if tensor.HasField("contents"):
            raise request_error(
                f"contents field must not be specified when using raw_input_contents for input "
                f"'{tensor.name}' for model '{request.model_name}'"
            )


def _dtype(datatype: str) -> np.dtype:  # type: ignore[type-arg]
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise bad_datatype(datatype)
    return dtype


def _raw_tensor(tensor: pb.ModelInferRequest.InferInputTensor, data: bytes) -> Tensor:
    datatype = tensor.datatype
    dtype = _dtype(datatype)
    shape = list(tensor.shape)
    needed = math.prod(shape)
    if len(data) != needed * dtype.itemsize:
        raise request_error(
            f"input data does not match shape {shape}: its raw contents hold {len(data)} "
            f"bytes, shape {shape} of {datatype} takes {needed * dtype.itemsize}"
        )
    return Tensor(tensor.name, shape, datatype, np.frombuffer(data, dtype=dtype))


def _typed_tensor(tensor: pb.ModelInferRequest.InferInputTensor) -> Tensor:
    datatype = tensor.datatype
    dtype = _dtype(datatype)
    field = CONTENTS[datatype]
    contents = tensor.contents
    filled = [descriptor.name for descriptor, _ in contents.ListFields()]
    if filled and filled != [field]:
        raise request_error(
            f"input {tensor.name!r}: an {datatype} tensor sends its values in "
            f"contents.{field} only, got {', '.join(f'contents.{name}' for name in filled)}"
        )
    shape = list(tensor.shape)
    try:
        values = np.array(getattr(contents, field), dtype=dtype)
    except OverflowError as e:
        raise request_error(f"input data out of range for {datatype}: {e}") from e
    needed = math.prod(shape)
    if values.size != needed:
        raise request_error(
            f"input data does not match shape {shape}: contents.{field} holds {values.size} "
            f"values, shape {shape} takes {needed}"
        )
    return Tensor(tensor.name, shape, datatype, values)


def response(
    spec: AnswerSpec,
    predictions: np.ndarray,
    model_name: str,
    version: str,
    treeshap: np.ndarray | None = None,
) -> pb.ModelInferResponse:
    """The ModelInferResponse: each output FP64, typed (`fp64_contents`) or, for a request
    whose inputs came raw, in `raw_output_contents` in the order of `outputs`."""
    answer = pb.ModelInferResponse(
        model_name=model_name, model_version=version, id=spec.request_id or next(ids)
    )
    for name, binary, values in output_values(spec, predictions, treeshap):
        output = answer.outputs.add(name=name, datatype="FP64", shape=values.shape)
        if binary:
            raw = values.astype("<f8").tobytes()
            answer.raw_output_contents.append(raw)
            output.parameters[BINARY_SIZE].int64_param = len(raw)
        else:
            output.contents.fp64_contents.extend(values.ravel().tolist())
    return answer
