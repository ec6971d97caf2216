"""The tutorial way with Flask: its development server, the SavedModel's signature called once per request.

    python -m bench.servers.flask_naive --port 8601

``app.run(threaded=True)`` as the Flask tutorials start it: a thread per
connection, HTTP/1.0, so every request comes on a new connection. The request
log is off (as the appliance's at WARNING), which only helps Flask.
``bench.servers.flask_keras`` is the same server calling Keras instead.
"""

from __future__ import annotations

import argparse
import logging
from typing import Protocol

from flask import Flask, jsonify, request

from bench.servers.models import load_newest


class Predictor(Protocol):
    def predict(self, instances: list) -> list[dict]:
        """TF Serving's row format: one ``{output: value}`` per instance."""


def create_app(models: dict[str, Predictor]) -> Flask:
    """``POST /v1/models/<name>:predict`` answered by ``models[name].predict(instances)``."""
    app = Flask(__name__)

    @app.post("/v1/models/<name>:predict")
    def predict(name: str):
        return jsonify(predictions=models[name].predict(request.get_json()["instances"]))

    return app


def serve(models: dict[str, Predictor], description: str) -> None:
    """Parse ``--port`` and run the development server, threaded, on loopback."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    create_app(models).run(host="127.0.0.1", port=args.port, threaded=True)


def main() -> None:
    serve(load_newest(), __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
