"""The tutorial way with Flask: its development server, the SavedModel's signature called once per request.

    python -m bench.servers.flask_naive --port 8601

``app.run(threaded=True)`` as the Flask tutorials start it: a thread per
connection, HTTP/1.0, so every request comes on a new connection. The request
log is off (as the appliance's at WARNING), which only helps Flask.
"""

from __future__ import annotations

import argparse
import logging

from flask import Flask, jsonify, request

from bench.servers.models import load_newest

app = Flask(__name__)
MODELS = load_newest()


@app.post("/v1/models/<name>:predict")
def predict(name: str):
    return jsonify(predictions=MODELS[name].predict(request.get_json()["instances"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
