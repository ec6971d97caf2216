"""The bench's v2 requests are what Triton's clients send for the same tensor, and its answer check tells the
SavedModel's own outputs from wrong ones.

The requests are compared with ``tritonclient``'s (``generate_request_body`` over HTTP, the message fields over
gRPC); the expected outputs come from calling the bundled digits SavedModel's signature with TensorFlow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.grpc import service_pb2
from tritonclient.http import InferenceServerClient, InferInput

from bench import v2
from bench.bodies import INPUT_NAMES, INSTANCES

from ..conftest import REPO

DIGITS = np.array([INSTANCES["digits"]], np.float32)


def triton_body(binary: bool) -> tuple[bytes, int | None]:
    tensor = InferInput(INPUT_NAMES["digits"], list(DIGITS.shape), "FP32")
    tensor.set_data_from_numpy(DIGITS, binary_data=binary)
    return InferenceServerClient.generate_request_body([tensor])


def test_the_json_request_is_tritonclients():
    theirs, _ = triton_body(binary=False)
    ours = json.loads(v2.infer_json_body("digits"))
    assert ours == {"inputs": json.loads(theirs)["inputs"]}  # tritonclient asks binary outputs too; this row JSON


def test_the_binary_request_is_tritonclients_header_and_bytes():
    theirs, their_length = triton_body(binary=True)
    ours, our_length = v2.infer_binary_body("digits")
    assert json.loads(ours[:our_length]) == json.loads(theirs[:their_length])
    assert ours[our_length:] == theirs[their_length:] == DIGITS.tobytes()


def test_the_grpc_request_carries_the_tensor_raw():
    request = service_pb2.ModelInferRequest.FromString(v2.infer_request("digits"))
    (tensor,) = request.inputs
    assert (request.model_name, tensor.name, tensor.datatype, list(tensor.shape)) == (
        "digits",
        "pixels",
        "FP32",
        [1, 64],
    )
    assert np.array_equal(np.frombuffer(request.raw_input_contents[0], "<f4").reshape(1, 64), DIGITS)


@pytest.fixture(scope="module")
def digits_outputs() -> dict[str, np.ndarray]:
    """The newest bundled digits version's outputs for the instance, from its signature."""
    import tensorflow as tf

    newest = max((REPO / "models" / "digits").glob("[0-9]*"), key=lambda path: int(path.name))
    signature = tf.saved_model.load(str(newest)).signatures["serving_default"]
    return {name: tensor.numpy() for name, tensor in signature(pixels=tf.constant(DIGITS)).items()}


def binary_answer(outputs: dict[str, np.ndarray]) -> tuple[bytes, int]:
    """A v2 binary answer as Triton writes one: the JSON header, then each output's raw bytes."""
    datatypes = {np.dtype("float32"): "FP32", np.dtype("int64"): "INT64"}
    header = {
        "outputs": [
            {
                "name": name,
                "datatype": datatypes[array.dtype],
                "shape": list(array.shape),
                "parameters": {"binary_data_size": array.nbytes},
            }
            for name, array in outputs.items()
        ]
    }
    head = json.dumps(header).encode()
    return head + b"".join(array.tobytes() for array in outputs.values()), len(head)


def test_the_answer_check_takes_the_models_outputs_and_refuses_others(digits_outputs):
    row = {name: array[0].tolist() for name, array in digits_outputs.items()}  # TF Serving's prediction row
    body, length = binary_answer(digits_outputs)
    assert v2.matches(v2.read_answer(body, length), row)
    json_answer = {
        "outputs": [
            {"name": name, "datatype": "FP32", "shape": [1, *array.shape[1:], 1], "data": array.ravel().tolist()}
            for name, array in digits_outputs.items()
        ]
    }  # MLServer's way: a 1-D output gets a trailing 1
    assert v2.matches(v2.read_answer(json.dumps(json_answer).encode()), row)

    wrong = {**digits_outputs, "probabilities": digits_outputs["probabilities"][:, ::-1].copy()}
    assert not v2.matches(v2.read_answer(*binary_answer(wrong)), row)
    assert not v2.matches({"probabilities": digits_outputs["probabilities"]}, row)  # an output missing
