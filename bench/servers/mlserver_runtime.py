"""A minimal MLServer custom runtime: a SavedModel's ``serving_default`` signature behind MLServer's v2 API.

    {"name": "digits", "implementation": "bench.servers.mlserver_runtime.SavedModelRuntime",
     "parameters": {"uri": "/path/to/models/digits/2"}}          (the model's model-settings.json)

Written the way MLServer's documentation shows custom runtimes: ``load``
loads the model from the settings' ``uri``; ``predict`` decodes each request
input with ``NumpyCodec``, calls the signature with them by name and encodes
every output the same way. It runs inside MLServer's own environment
(``bench/mlserver.py`` makes it), which has ``mlserver`` and TensorFlow but
not the appliance: it imports neither the appliance nor the rest of the bench.
"""

from __future__ import annotations

import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class SavedModelRuntime(MLModel):
    async def load(self) -> bool:
        self._loaded = tf.saved_model.load(await get_model_uri(self._settings))  # the signature needs it alive
        self._signature = self._loaded.signatures["serving_default"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {request_input.name: NumpyCodec.decode_input(request_input) for request_input in payload.inputs}
        outputs = self._signature(**inputs)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(name, tensor.numpy()) for name, tensor in outputs.items()],
        )
