"""The tutorial way with Flask and Keras: its development server, ``model.predict(...)`` called once per request.

    python -m bench.servers.flask_keras --port 8603

The server of ``bench.servers.flask_naive`` (``app.run(threaded=True)``,
HTTP/1.0, request log off), but each bundled model's newest SavedModel is
wrapped as the Keras 3 tutorials do, ``keras.layers.TFSMLayer(path,
call_endpoint="serving_default")`` in a functional ``keras.Model``, and every
request calls ``model.predict(np.array(instances, np.float32), verbose=0)``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from bench.servers.flask_naive import serve
from bench.servers.models import as_rows, newest_version_dirs


class KerasModel:
    """One SavedModel as a Keras model: ``keras.Input(shape=(n_features,))`` → TFSMLayer → its outputs dict."""

    def __init__(self, path: Path):
        layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        (input_spec,) = layer.call_endpoint_fn.structured_input_signature[1].values()
        inputs = keras.Input(shape=(input_spec.shape[-1],))
        self.model = keras.Model(inputs, layer(inputs))

    def predict(self, instances: list) -> list[dict]:
        """TF Serving's row format: one ``{output: value}`` per instance."""
        return as_rows(self.model.predict(np.array(instances, np.float32), verbose=0))


def main() -> None:
    serve({name: KerasModel(path) for name, path in newest_version_dirs().items()}, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
