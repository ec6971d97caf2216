"""A remote TensorFlow Serving reached over gRPC: calls forwarded as they came, health watched through ModelService.

    remote = RemoteGrpcTFServing(RemoteSettings(url="grpc://gpu-box:8500"), models=["digits"])
    remote.start()                                      # background GetModelStatus of each model
    answer = remote.call("Predict", request_bytes, timeout=5.0)   # the remote's PredictResponse, serialized

Requests pass as the bytes they came in, over one HTTP/2 channel (``grpcs://``: TLS, with the system's CAs or
``[remote] ssl_ca_file``, and a client certificate when one is configured); only a request whose model name
or version must change for the remote is parsed, changed and serialized again. The circuit breaker and the
probes are :class:`.remote.Remote`'s: a call that ends UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL or UNKNOWN
counts as a failure and raises Unavailable; any other status is the remote's verdict on the request, raised
as the ServingError of that code with the remote's message.

TF Serving's protos come with TensorFlow: they are imported by the first call that needs one (a probe, or a
request to retarget), not with this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from ..config import DEFAULT_GRPC_PORT, RemoteSettings
from ..errors import Code, InvalidArgument, ServingError, Unavailable
from .remote import Remote

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
METHODS = {
    "Predict": PREDICTION_SERVICE,
    "Classify": PREDICTION_SERVICE,
    "Regress": PREDICTION_SERVICE,
    "MultiInference": PREDICTION_SERVICE,
    "GetModelMetadata": PREDICTION_SERVICE,
    "GetModelStatus": MODEL_SERVICE,
}
# What the channel says when the remote gave no proper answer; any other status is the remote's verdict.
TRANSPORT_FAILURES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
)

Metadata = Sequence[tuple[str, str]]


def channel_target(url: str) -> str:
    """The channel target of a ``grpc://`` or ``grpcs://`` URL: "host:port" (port 8500 when none is given)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.path.strip("/") or parts.query:
        raise InvalidArgument(f"a gRPC remote is grpc://host:port or grpcs://host:port, not {url}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or DEFAULT_GRPC_PORT}"


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InvalidArgument(f"cannot read the remote's {what} {path}: {e.strerror}") from None


def _channel(settings: RemoteSettings) -> grpc.Channel:
    probe_ms = max(int(settings.probe_seconds * 1000), 100)
    options = [
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
        # Reconnect within a probe interval once the remote is back (gRPC's backoff grows to 2 minutes), and
        # give up connecting after the connect timeout.
        ("grpc.initial_reconnect_backoff_ms", probe_ms),
        ("grpc.max_reconnect_backoff_ms", probe_ms),
        ("grpc.min_reconnect_backoff_ms", max(int(settings.connect_timeout_seconds * 1000), 100)),
    ]
    target = channel_target(settings.url)
    if settings.url.startswith("grpc://"):
        return grpc.insecure_channel(target, options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ssl_ca_file, "CA certificate (ssl_ca_file)"),
        private_key=_read(settings.ssl_key_file, "private key (ssl_key_file)"),
        certificate_chain=_read(settings.ssl_cert_file, "certificate (ssl_cert_file)"),
    )
    return grpc.secure_channel(target, credentials, options)


def _request_type(method: str):
    from tensorflow_serving.apis import (  # TensorFlow's protos: see the module's docstring
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        predict_pb2,
        regression_pb2,
    )

    return {
        "Predict": predict_pb2.PredictRequest,
        "Classify": classification_pb2.ClassificationRequest,
        "Regress": regression_pb2.RegressionRequest,
        "MultiInference": inference_pb2.MultiInferenceRequest,
        "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
        "GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
    }[method]


def retarget(method: str, request: bytes, name: str | None, version: int | None) -> bytes:
    """``request`` (of ``method``) for model ``name`` and ``version`` of it, each when given."""
    message = _request_type(method).FromString(request)
    specs = [task.model_spec for task in message.tasks] if method == "MultiInference" else [message.model_spec]
    for spec in specs:
        if name is not None:
            spec.name = name
        if version is not None:
            spec.version.value = version  # a oneof: clears a version_label
    return message.SerializeToString()


class RemoteGrpcTFServing(Remote):
    """A TF Serving gRPC endpoint (PredictionService and ModelService) that calls can be forwarded to."""

    def __init__(self, settings: RemoteSettings, models: Iterable[str] = (), pool_size: int = 8):
        """``pool_size`` is the REST remote's; one HTTP/2 channel carries any number of concurrent calls."""
        super().__init__(settings, models)
        self._channel = _channel(settings)
        self._metadata: tuple[tuple[str, str], ...] = tuple(
            (name.lower(), value) for name, value in settings.headers.items()
        ) + ((("authorization", f"Bearer {settings.token}"),) if settings.token else ())
        self._callables: dict[tuple[str, Any], grpc.UnaryUnaryMultiCallable] = {}

    def call(
        self,
        method: str,
        request: bytes,
        timeout: float | None = None,
        metadata: Metadata = (),
        *,
        model: str | None = None,
        version: int | None = None,
        response_type: Any = None,
    ) -> Any:
        """The remote's answer to ``request`` (the serialized request of ``method``, e.g. "Predict"), serialized.

        ``timeout``: the caller's own deadline, in seconds from now (the remote timeout bounds it). ``model``:
        the local model name the request names, asked of the remote under its name there (``[remote]
        model_names``); ``version``: the version to ask for instead of the one the request names, if any. The
        bytes pass unchanged unless one of them changes the request. With ``response_type`` (a message class),
        the answer comes parsed, and one that does not parse counts as a failure.
        """
        remote_name = self.settings.remote_name(model) if model is not None else None
        if version is not None or remote_name != model:
            request = retarget(method, request, remote_name, version)
        limit = self.settings.timeout_seconds if timeout is None else min(timeout, self.settings.timeout_seconds)
        started = time.perf_counter()
        try:
            answer = self._callable(method, response_type)(
                request, timeout=limit, metadata=(*self._metadata, *metadata)
            )
        except grpc.RpcError as e:
            raise self._status_error(e, timeout) from None
        self._succeeded(started)
        return answer

    def _callable(self, method: str, response_type: Any) -> grpc.UnaryUnaryMultiCallable:
        key = (method, response_type)
        found = self._callables.get(key)
        if found is None:
            deserialize: Callable[[bytes], Any] | None = response_type.FromString if response_type else None
            found = self._callables[key] = self._channel.unary_unary(
                f"/{METHODS[method]}/{method}", request_serializer=None, response_deserializer=deserialize
            )
        return found

    def _status_error(self, error: grpc.RpcError, timeout: float | None) -> ServingError:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]  # a grpc.Call too
        details: str = error.details() or code.name  # type: ignore[attr-defined]
        if (
            code is grpc.StatusCode.DEADLINE_EXCEEDED
            and timeout is not None
            and timeout < self.settings.timeout_seconds
        ):
            return ServingError(details, Code.DEADLINE_EXCEEDED)  # the caller's deadline, not the remote's fault
        if code in TRANSPORT_FAILURES:
            return self._failed(f"{self.url} answered {code.name}: {details}")
        self.breaker.success()  # an answer, if not the one hoped for
        return ServingError(details, Code[code.name])

    def _available_versions(self, model: str) -> frozenset[int] | None:
        from tensorflow_serving.apis import get_model_status_pb2  # TensorFlow's protos: see the module's docstring

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.settings.remote_name(model)
        try:
            answer = self.call(
                "GetModelStatus",
                request.SerializeToString(),
                response_type=get_model_status_pb2.GetModelStatusResponse,
            )
        except Unavailable:
            raise
        except ServingError:  # NOT_FOUND: the remote does not serve it
            return None
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return frozenset(s.version for s in answer.model_version_status if s.state == available)

    def _close(self) -> None:
        self._channel.close()
