"""The usual FastAPI server: uvicorn, a pydantic request model, the SavedModel's signature called per request.

    python -m bench.servers.fastapi_naive --port 8602

One uvicorn worker with its defaults (uvloop and httptools when installed, as
with ``uvicorn[standard]``); the endpoint is a plain ``def``, so FastAPI runs
the blocking TensorFlow call in its thread pool, as its documentation advises.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from bench.servers.models import load_newest

app = FastAPI()
MODELS = load_newest()


class PredictRequest(BaseModel):
    instances: list[list[float]]


@app.post("/v1/models/{name}:predict")
def predict(name: str, body: PredictRequest) -> dict:
    return {"predictions": MODELS[name].predict(body.instances)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
