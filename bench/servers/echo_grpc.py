"""The gRPC floor: grpcio's server answering every ``Predict`` with a fixed small ``PredictResponse``.

    python -m bench.servers.echo_grpc --port 8600

The same server configuration as the appliance's gRPC port: grpcio's
thread-pool server with the appliance's gRPC worker thread count (the default
of ``--grpc_max_threads``, ``appliance.config.DEFAULT_THREADS``) and TF
Serving's ``PredictionService`` stubs, so the request is parsed as the
appliance parses it; it does nothing else (no model).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

import grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from appliance.config import DEFAULT_THREADS


def fixed_answer() -> predict_pb2.PredictResponse:
    """``{"class": [0]}``, an int64 tensor of one row, as the HTTP echo's ``{"predictions": [{"class": 0}]}``."""
    answer = predict_pb2.PredictResponse()
    answer.model_spec.name = "echo"
    tensor = answer.outputs["class"]
    tensor.dtype = types_pb2.DT_INT64
    tensor.tensor_shape.dim.add(size=1)
    tensor.int64_val.append(0)
    return answer


class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self) -> None:
        self.answer = fixed_answer()

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return self.answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = grpc.server(ThreadPoolExecutor(DEFAULT_THREADS))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
