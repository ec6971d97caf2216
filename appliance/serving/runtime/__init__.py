"""The contract every runtime (today local TensorFlow; other model formats later) fulfils.

A runtime loads a version directory into a :class:`Servable`; a servable
describes its signatures and runs predict, classify and regress on numpy
arrays and tf.Example-style feature dicts. Nothing here imports TensorFlow.

    runtime = LocalTFRuntime(device="auto")
    servable = runtime.load(Path("models/digits/2"))
    outputs = servable.predict("serving_default", {"pixels": batch})
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import FailedPrecondition
from .inputs import InputCheck

DEFAULT_SIGNATURE = "serving_default"
# A SignatureDef's method_name for each of TF Serving's APIs.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

# (kind, values) with kind "int64" | "float" | "bytes" | None, as decoded from JSON examples.
Feature = tuple
Features = Mapping[str, Feature]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: its alias, dtype (e.g. "DT_FLOAT") and shape (None = unknown rank)."""

    alias: str
    dtype: str
    shape: tuple[int, ...] | None
    tensor_name: str


@dataclasses.dataclass(frozen=True)
class SignatureSpec:
    """A SignatureDef reduced to what requests are checked against."""

    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    defaults: frozenset[str] = frozenset()

    @property
    def input_dtypes(self) -> dict[str, str]:
        return {alias: spec.dtype for alias, spec in self.inputs.items()}

    @functools.cached_property
    def input_check(self) -> InputCheck:
        """Requests' inputs compared with this signature's: ``signature.input_check.check(inputs)``."""
        return InputCheck(self)


def signature_list(signatures: Mapping[str, SignatureSpec]) -> str:
    """The signatures a client can call, for messages: "image, serving_default" (``__saved_model_init_op`` left out)."""
    return ", ".join(sorted(name for name in signatures if not name.startswith("__"))) or "none"


def predict_signature(signatures: Mapping[str, SignatureSpec], signature_name: str) -> SignatureSpec:
    """The signature a predict request names ("" for serving_default), or FailedPrecondition listing the others."""
    name = signature_name or DEFAULT_SIGNATURE
    signature = signatures.get(name)
    if signature is None:
        raise FailedPrecondition(f'Serving signature key "{name}" not found. Signatures: {signature_list(signatures)}.')
    return signature


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """The device inference runs on, as reported by the API and the CLI."""

    type: str  # "CPU" or "GPU"
    name: str
    memory_growth: bool | None = None  # None on CPU
    count: int = 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        text = f"{self.type} ({self.name})"
        if self.type == "GPU":
            text += f", {self.count} visible, memory growth {'on' if self.memory_growth else 'off'}"
        return text


class Servable(abc.ABC):
    """A loaded model version."""

    signatures: Mapping[str, SignatureSpec]
    # The model format, named as the Open Inference Protocol's model metadata names it (Keras files are
    # served as the SavedModels they export to).
    platform: str = "tensorflow_savedmodel"

    @abc.abstractmethod
    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run a signature; returns every output (or those in ``output_filter``) by alias.

        ``deadline`` (a :func:`time.monotonic` time, e.g. a gRPC client's) bounds how long the request may wait
        for its turn, in a batching queue; the run itself is bounded by the runtime's own timeout.
        """

    @abc.abstractmethod
    def classify(
        self, signature_name: str, context: Features | None, examples: Sequence[Features]
    ) -> list[list[tuple[str, float]]]:
        """TF Serving's Classify: per example, a list of (label, score)."""

    @abc.abstractmethod
    def regress(self, signature_name: str, context: Features | None, examples: Sequence[Features]) -> list[float]:
        """TF Serving's Regress: one value per example."""

    @abc.abstractmethod
    def signature_defs_json(self) -> dict:
        """Every SignatureDef as proto3 JSON (TF Serving's metadata ``signature_def`` map)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the model's memory; the servable is unusable afterwards."""


class Runtime(abc.ABC):
    """Loads servables onto one device."""

    if TYPE_CHECKING:  # read-only to its users: a plain attribute, or a property (DeferredRuntime)

        @property
        def device(self) -> DeviceInfo: ...

    @abc.abstractmethod
    def load(self, path: Path) -> Servable:
        """Load the SavedModel in ``path``; raises ServingError when it cannot."""

    def reclaim_memory(self) -> None:  # noqa: B027  # a deliberate no-op default, not an abstract method
        """Give the memory of the servables closed so far back (called after each unload); by default nothing."""


STARTING = DeviceInfo(type="pending", name="starting TensorFlow")


class DeferredRuntime(Runtime):
    """A runtime made on its first load, so that importing TensorFlow (seconds) delays nothing else.

    The desktop app shows its tray icon and answers ``/health`` ("loading") at
    once, while the manager's loading thread pays for the import. Until then
    :attr:`device` is :data:`STARTING`; if making the runtime fails (say
    ``--device gpu`` without a GPU), every load fails with that error.
    """

    def __init__(self, make: Callable[[], Runtime]):
        self._make = make
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    @property
    def device(self) -> DeviceInfo:
        runtime = self._runtime
        return runtime.device if runtime is not None else STARTING

    def make(self) -> Runtime:
        """The runtime, made now (in the calling thread) unless another thread made it or is making it."""
        with self._lock:
            if self._runtime is None:
                self._runtime = self._make()
            return self._runtime

    def load(self, path: Path) -> Servable:
        return self.make().load(path)

    def reclaim_memory(self) -> None:
        if self._runtime is not None:
            self._runtime.reclaim_memory()
