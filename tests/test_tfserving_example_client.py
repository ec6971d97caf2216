"""TF Serving's example gRPC clients, their pattern unchanged, against a real appliance serving the bundled models.

``tensorflow_serving/example/mnist_client.py`` sends one image per request, at most ``concurrency`` requests in
flight, each with ``stub.Predict.future(request, timeout)`` and a done-callback that counts the errors (a failed
call, or a class other than the image's label); ``resnet_client_grpc.py`` sends one encoded image with
``stub.Predict(request, timeout)`` and reads the class from the scores' ``float_val``. Here the images are the
digits samples in models/digits/samples (each named by its digit) and the model is the bundled ``digits``.

    PYTHONPATH=$PWD python -m pytest tests/test_tfserving_example_client.py -q
"""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from .conftest import MODELS

SAMPLES = sorted((MODELS / "digits" / "samples").glob("*.png"))
NUM_TESTS = 30  # mnist_client.py's --num_tests: the samples, each sent several times
CONCURRENCY = 4  # its --concurrency


class ResultCounter:
    """mnist_client.py's counter of the results: errors, calls done, and a limit on the calls in flight."""

    def __init__(self, num_tests: int, concurrency: int):
        self._num_tests = num_tests
        self._concurrency = concurrency
        self.errors: list[str] = []
        self._done = 0
        self._active = 0
        self._changed = threading.Condition()

    def throttle(self) -> None:
        """Wait for a free slot, then take it."""
        with self._changed:
            self._changed.wait_for(lambda: self._active < self._concurrency)
            self._active += 1

    def finished(self, error: str | None) -> None:
        """One call done (``error`` says how it went wrong, if it did): its slot is free again."""
        with self._changed:
            if error is not None:
                self.errors.append(error)
            self._done += 1
            self._active -= 1
            self._changed.notify_all()

    def error_rate(self, timeout: float) -> float:
        """The share of calls that went wrong, once all of them are done."""
        with self._changed:
            assert self._changed.wait_for(lambda: self._done == self._num_tests, timeout), "calls never finished"
            return len(self.errors) / self._num_tests


def label_of(sample: Path) -> int:
    return int(sample.stem)


def pixels_of(sample: Path) -> np.ndarray:
    """The 64 pixels of a sample as the digits model takes them (load_digits' 8x8, 0..16, bright ink), as
    mnist_input_data hands mnist_client.py an image's pixels: the PNG's blocks averaged, dark ink made bright."""
    gray = np.asarray(Image.open(sample).convert("L"), np.float32)
    block = gray.shape[0] // 8
    small = gray.reshape(8, block, 8, block).mean(axis=(1, 3))
    return ((255.0 - small) * 16.0 / 255.0).ravel()


def rpc_callback(label: int, counter: ResultCounter):
    """mnist_client.py's _create_rpc_callback: checks one answer's class against the image's label."""

    def callback(result_future: grpc.Future) -> None:
        exception = result_future.exception()
        if exception is not None:
            counter.finished(repr(exception))
            return
        scores = np.array(result_future.result().outputs["probabilities"].float_val)
        prediction = int(np.argmax(scores))
        counter.finished(None if prediction == label else f"predicted {prediction} for a {label}")

    return callback


def test_mnist_client_pattern(bundled_server):
    """mnist_client.py's do_inference: concurrent Predict.future calls with done-callbacks, at most CONCURRENCY in
    flight; no call fails and every predicted class is the sample's label (an error rate of 0)."""
    channel = grpc.insecure_channel(bundled_server.grpc_address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    counter = ResultCounter(NUM_TESTS, CONCURRENCY)
    for index in range(NUM_TESTS):
        sample = SAMPLES[index % len(SAMPLES)]
        image = pixels_of(sample)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "digits"
        request.model_spec.signature_name = "serving_default"
        request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(image, shape=[1, image.size]))
        counter.throttle()
        result_future = stub.Predict.future(request, 5.0)  # 5 seconds
        result_future.add_done_callback(rpc_callback(label_of(sample), counter))
    try:
        assert counter.error_rate(timeout=60) == 0.0, counter.errors
    finally:
        channel.close()


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_resnet_client_grpc_pattern(bundled_server, sample):
    """resnet_client_grpc.py's main (its encoded-image path): one Predict with the image's bytes, the class read
    from the float_val of the scores."""
    data = sample.read_bytes()
    channel = grpc.insecure_channel(bundled_server.grpc_address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "image"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([data]))
    result = stub.Predict(request, 10.0)  # 10 secs timeout
    channel.close()
    result = result.outputs["probabilities"].float_val
    assert int(np.argmax(result)) == label_of(sample)
