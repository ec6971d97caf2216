"""The Open Inference Protocol's operations over the model manager, shared by its REST and gRPC wires.

    protocol = InferenceProtocol(manager)
    protocol.model_metadata("digits", None)                  # {"name": "digits", "versions": ["2", "1"], ...}
    handle = protocol.acquire("digits", "")                  # "" or None: the chosen version, as everywhere
    with handle:
        result = protocol.infer(handle, InferRequest({"pixels": batch}, outputs=("class",)))

The wires parse their format into :class:`InferRequest` (numpy arrays, each in its v2 datatype's dtype) and
write :class:`InferResult` back; what is checked and run is here: the version the request names, each input's
datatype against the signature's, the outputs asked for. Errors are ServingErrors with TF Serving's codes.
A model's v2 inputs and outputs are its ``serving_default`` signature's (another through the
``signature_name`` parameter).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ... import __version__
from ...errors import InvalidArgument, NotFound
from ...serving.batching import BatchingServable, is_batchable
from ...serving.manager import ModelManager, ServableHandle, State
from ...serving.runtime import DEFAULT_SIGNATURE, Servable, SignatureSpec, TensorSpec, signature_list
from .datatypes import NUMPY_DTYPES, array_datatype, datatype_of

SERVER_NAME = "appliance"
# The protocol's extensions served (GET /v2 and ServerMetadata list them, as Triton does).
EXTENSIONS = ("binary_tensor_data", "model_repository", "statistics")
SIGNATURE_PARAMETER = "signature_name"
# Triton's model configuration names each datatype TYPE_<datatype>, but BYTES (TYPE_STRING).
CONFIG_TYPES = {datatype: f"TYPE_{datatype}" for datatype in NUMPY_DTYPES} | {"BYTES": "TYPE_STRING"}
# Triton's backend for each platform (its model configuration names both).
PLATFORM_BACKENDS = {"tensorflow_savedmodel": "tensorflow"}


@dataclasses.dataclass(frozen=True)
class InferRequest:
    """One inference request as the wires parse it: inputs by name, the outputs asked for (none: all)."""

    inputs: Mapping[str, np.ndarray]
    outputs: Sequence[str] = ()
    id: str | None = None
    parameters: Mapping[str, object] = dataclasses.field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() by which the client gives up waiting (gRPC's deadline)


@dataclasses.dataclass(frozen=True)
class InferResult:
    """The answer: the model version that ran and its outputs by name, in the signature's order."""

    model_name: str
    model_version: int
    outputs: Mapping[str, np.ndarray]
    id: str | None = None


def version_number(version: str | None) -> int | None:
    """A request's version ("" or None: the chosen one); InvalidArgument unless it is a version number."""
    if not version:
        return None
    if not version.isdigit() or len(version) > 19:  # int64, as TF Serving's versions
        raise InvalidArgument(f'model version must be a version number such as "1", not {version!r}')
    return int(version)


def _tensor_metadata(spec: TensorSpec) -> dict:
    return {
        "name": spec.alias,
        "datatype": datatype_of(spec.dtype) or spec.dtype.removeprefix("DT_"),
        # -1 for a dimension of any size, as the protocol says; a tensor of any rank has no shape to give
        "shape": [] if spec.shape is None else list(spec.shape),
    }


class InferenceProtocol:
    """The protocol's health, metadata and inference operations over one model manager."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    # -- health ------------------------------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once the first pass over the models has loaded (or failed) each of them, as /health says."""
        return self._manager.ready

    def model_ready(self, name: str, version: str | None) -> bool:
        """Whether the version (none: the chosen one) is AVAILABLE; NotFound for a model that is not served."""
        number = version_number(version)
        statuses = self._manager.status(name)  # NotFound for an unknown model
        if number is None:
            return self._manager.chosen_version(name) is not None
        return any(s.version == number and s.state is State.AVAILABLE for s in statuses)

    # -- metadata ----------------------------------------------------------------------------------------------

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None) -> dict:
        """The model's name, versions (newest first), platform and its signature's inputs and outputs."""
        with self.acquire(name, version) as handle:
            signature = self.signature(handle, {})
            platform = handle.servable.platform
        versions = [str(s.version) for s in self._manager.status(name) if s.state is State.AVAILABLE]
        return {
            "name": name,
            "versions": versions,
            "platform": platform,
            "inputs": [_tensor_metadata(spec) for spec in signature.inputs.values()],
            "outputs": [_tensor_metadata(spec) for spec in signature.outputs.values()],
        }

    def model_config(self, name: str, version: str | None) -> dict:
        """Triton's model configuration, as far as a SavedModel has one (what perf_analyzer reads), in its JSON
        form: ``max_batch_size`` is the batching's when the version is batched, and then the dims leave out the
        batch dimension; 0 and the whole shapes otherwise."""
        metadata = self.model_metadata(name, version)
        with self.acquire(name, version) as handle:
            servable = handle.servable
            batched = isinstance(servable, BatchingServable) and is_batchable(self.signature(handle, {}))
            max_batch_size = servable.parameters.max_batch_size if isinstance(servable, BatchingServable) else 0
        max_batch_size = max_batch_size if batched else 0

        def tensors(entries: list[dict]) -> list[dict]:
            return [
                {
                    "name": t["name"],
                    "data_type": CONFIG_TYPES.get(t["datatype"], "TYPE_INVALID"),
                    "dims": t["shape"][1:] if max_batch_size else t["shape"],
                }
                for t in entries
            ]

        platform = metadata["platform"]
        return {
            "name": metadata["name"],
            "platform": platform,
            "backend": PLATFORM_BACKENDS.get(platform, ""),
            "max_batch_size": max_batch_size,
            "input": tensors(metadata["inputs"]),
            "output": tensors(metadata["outputs"]),
        }

    # -- inference ---------------------------------------------------------------------------------------------

    def acquire(self, name: str, version: str | None) -> ServableHandle:
        """The version that answers: the one named, else the chosen one; NotFound naming what is served."""
        if not name:
            raise InvalidArgument("the request names no model")
        return self._manager.acquire(name, version_number(version))

    @staticmethod
    def signature(handle: ServableHandle, parameters: Mapping[str, object]) -> SignatureSpec:
        """The signature a request runs: ``serving_default``, or the one its ``signature_name`` parameter names."""
        name = parameters.get(SIGNATURE_PARAMETER, "")
        if not isinstance(name, str):
            raise InvalidArgument(f"parameter {SIGNATURE_PARAMETER!r} must be a string")
        name = name or DEFAULT_SIGNATURE
        signatures = handle.servable.signatures
        signature = signatures.get(name)
        if signature is None:
            raise NotFound(
                f'model {handle.name} version {handle.version} has no signature "{name}"; '
                f"its signatures: {signature_list(signatures)}"
            )
        return signature

    def infer(self, handle: ServableHandle, request: InferRequest) -> InferResult:
        """Run ``request`` on ``handle``'s version (held by the caller): each input checked for its datatype."""
        signature = self.signature(handle, request.parameters)
        for name, array in request.inputs.items():
            spec = signature.inputs.get(name)
            if spec is None:
                continue  # the servable names the signature's inputs, in TF Serving's words
            expected = datatype_of(spec.dtype)
            sent = array_datatype(array)
            if expected is None:
                raise InvalidArgument(
                    f"input {name!r} of model {handle.name} is {spec.dtype}, which the Open Inference Protocol has "
                    "no datatype for: call it through the TF Serving API (/v1/models/...)"
                )
            if sent != expected:
                raise InvalidArgument(
                    f"input {name!r} has datatype {sent}, but model {handle.name} version {handle.version} "
                    f"expects {expected}"
                )
        servable: Servable = handle.servable
        outputs = servable.predict(signature.name, request.inputs, request.outputs, deadline=request.deadline)
        for name, array in outputs.items():
            if array_datatype(array) is None:
                raise InvalidArgument(
                    f"output {name!r} of model {handle.name} is {array.dtype}, which the Open Inference Protocol has "
                    "no datatype for: ask for the other outputs by name, or use the TF Serving API"
                )
        handle.record_predict(signature.name, request.inputs, outputs)
        return InferResult(handle.name, handle.version, outputs, request.id)
