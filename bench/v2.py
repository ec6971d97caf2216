"""The Open Inference Protocol (KServe v2) requests the bench sends, as JSON and as Triton's binary tensor data, and
their answers read back into arrays.

    path, body = infer_path("digits"), infer_json_body("digits")
    body, header_length = infer_binary_body("digits")     # header: Inference-Header-Content-Length
    outputs = read_answer(answer_bytes, header_length)   # {"class": array([[3]]), "probabilities": ...}
    message = infer_request("digits")                    # gRPC: ModelInfer's request, serialized
    outputs = read_response(answer_message)

The input is the instance every other row sends (``bench.bodies.INSTANCES``),
as a 1xN FP32 tensor named as the model's signature input. The binary request
carries that tensor as N raw little-endian float32 after its JSON header and
asks for every output as raw bytes (``"binary_data_output": true``). Over
gRPC (``inference.GRPCInferenceService/ModelInfer``, with ``tritonclient``'s
generated messages), the tensor goes in ``raw_input_contents``, as Triton's
client sends it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from tritonclient.grpc import service_pb2

from bench.bodies import INPUT_NAMES, INSTANCES

#: The header that says how long the JSON part of a binary request or answer is.
HEADER_LENGTH = "Inference-Header-Content-Length"
#: The v2 gRPC method, as a channel's unary_unary names it.
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
#: The v2 datatypes the bundled models' outputs come as, their NumPy types and their typed gRPC contents.
_DTYPES = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}
_CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents", "INT64": "int64_contents"}


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def _input(model: str) -> dict:
    return {"name": INPUT_NAMES[model], "datatype": "FP32", "shape": [1, len(INSTANCES[model])]}


def infer_json_body(model: str) -> bytes:
    """``{"inputs": [{"name", "datatype": "FP32", "shape": [1, N], "data": [...]}]}``, the data flat."""
    return json.dumps({"inputs": [{**_input(model), "data": INSTANCES[model]}]}).encode()


def infer_binary_body(model: str) -> tuple[bytes, int]:
    """The binary request: its body (JSON header, then the raw tensor) and the JSON header's length."""
    raw = np.asarray(INSTANCES[model], "<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [{**_input(model), "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + raw, len(header)


def read_answer(body: bytes, header_length: int | None = None) -> dict[str, np.ndarray]:
    """A v2 inference answer's outputs by name; ``header_length`` (its ``Inference-Header-Content-Length``) when
    it is binary: the JSON header, then each binary output's ``binary_data_size`` bytes in the header's order."""
    header = json.loads(body if header_length is None else body[:header_length])
    offset = header_length or 0
    outputs = {}
    for output in header["outputs"]:
        dtype = np.dtype(_DTYPES[output["datatype"]])
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            array = np.asarray(output["data"], dtype)
        else:
            array = np.frombuffer(body[offset : offset + size], dtype)
            offset += size
        outputs[output["name"]] = array.reshape(output["shape"])
    return outputs


def infer_request(model: str) -> bytes:
    """A serialized ``ModelInferRequest`` of the instance: a 1xN FP32 tensor in ``raw_input_contents``."""
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = _input(model)
    request.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
    request.raw_input_contents.append(np.asarray(INSTANCES[model], "<f4").tobytes())
    return request.SerializeToString()


def read_response(message: bytes) -> dict[str, np.ndarray]:
    """A serialized ``ModelInferResponse``'s outputs by name, from ``raw_output_contents`` or typed contents."""
    response = service_pb2.ModelInferResponse.FromString(message)
    outputs = {}
    for i, output in enumerate(response.outputs):
        dtype = np.dtype(_DTYPES[output.datatype])
        if response.raw_output_contents:
            array = np.frombuffer(response.raw_output_contents[i], dtype)
        else:
            array = np.asarray(getattr(output.contents, _CONTENTS[output.datatype]), dtype)
        outputs[output.name] = array.reshape(tuple(output.shape))
    return outputs


def matches(outputs: Mapping[str, np.ndarray], expected: Mapping[str, object]) -> bool:
    """Whether one-row v2 ``outputs`` hold the values of ``expected``, one TF Serving prediction row
    (``{"class": 3, "probabilities": [...]}``); a v2 server may add a trailing 1 to a 1-D output's shape."""
    return set(outputs) == set(expected) and all(
        outputs[name].shape[0] == 1 and np.allclose(outputs[name][0].ravel(), np.ravel(value), rtol=1e-5, atol=1e-6)
        for name, value in expected.items()
    )
