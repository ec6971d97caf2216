"""The request every server gets: TF Serving's ``:predict`` with one instance of each bundled model's input.

body = predict_body("digits")          # REST: {"instances": [[...]]}
message = predict_request("digits")    # gRPC: the same instance as a serialized PredictRequest
"""

from __future__ import annotations

import json

#: One input row per bundled model: an 8x8 digit's 64 pixels (0-16), an iris flower's 4 measurements (cm).
INSTANCES = {
    "digits": [float(i % 17) for i in range(64)],
    "iris": [5.1, 3.5, 1.4, 0.2],
}
#: The name of each bundled model's one input (its serving_default signature's, as models/build_models.py writes).
INPUT_NAMES = {"digits": "pixels", "iris": "features"}
#: TF Serving's gRPC Predict, as a channel's unary_unary names it.
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


def predict_path(model: str) -> str:
    return f"/v1/models/{model}:predict"


def predict_body(model: str) -> bytes:
    """``{"instances": [[...]]}``: batch 1, the same bytes for every server."""
    return json.dumps({"instances": [INSTANCES[model]]}).encode()


def predict_request(model: str) -> bytes:
    """A serialized ``PredictRequest`` of the same instance: a 1xN float32 tensor in ``tensor_content``.

    ``tensor_content`` is what ``tf.make_tensor_proto`` writes for a NumPy array, as TF Serving's client examples
    send. (Importing ``tensorflow_serving.apis`` imports TensorFlow: a few seconds, once.)
    """
    import numpy as np
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    instance = np.array([INSTANCES[model]], np.float32)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    tensor = request.inputs[INPUT_NAMES[model]]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=instance.shape[0])
    tensor.tensor_shape.dim.add(size=instance.shape[1])
    tensor.tensor_content = instance.tobytes()
    return request.SerializeToString()
