"""Warm a freshly loaded version up before it is AVAILABLE, so the first real request is not the slow one.

A SavedModel that ships TF Serving's ``assets.extra/tf_serving_warmup_requests``
(a TFRecord file of ``PredictionLog`` protos) is warmed with those requests,
exactly as TF Serving does: a record that fails fails the load. A model without
one gets a synthetic request per signature, built from the signature itself
(one row of zeros, empty strings); those are best effort, since a signature may
reject made-up input (an image decoder, a tf.Example parser needing features).
Either way, a model that cannot run at all (its variables missing or never
initialized: a Keras 3 model saved with ``tf.saved_model.save``) fails the load
with an error saying how to fix it, rather than becoming AVAILABLE.

    warm_up(servable, Path("models/digits/2"))   # -> the number of warm-up requests run
    warm_up(servable, path, iterations=3)        # each record run 3 times (--num_request_iterations_for_warmup)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...errors import Code, FailedPrecondition, ServingError
from . import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, Features, Servable, SignatureSpec
from .inputs import NUMPY_DTYPES

log = logging.getLogger(__name__)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's limit on warm-up records
# TensorFlow's errors for a model whose variables are not there to read (tensorflow/serving#2250).
_BROKEN_MODEL = re.compile(
    r"Could not find variable|uninitialized value|Attempting to use uninitialized"
    r"|Resource \S+ does not exist|Container \S+ does not exist"
)


def warm_up(servable: Servable, version_path: Path, iterations: int = 1) -> int:
    """Run the version's warm-up records, each ``iterations`` times (or synthetic requests, once each); returns
    how many requests ran."""
    records = Path(version_path) / WARMUP_FILE
    if records.is_file():
        return _replay(servable, records, max(iterations, 1))
    return _synthetic(servable)


def broken_model_error(error: ServingError) -> FailedPrecondition | None:
    """The load error to report when ``error`` says the model itself cannot run, else None."""
    if not _BROKEN_MODEL.search(error.message):
        return None
    first_sentence = error.message.split("\n", 1)[0].split(". ", 1)[0]
    return FailedPrecondition(
        f"The model cannot run: its variables are missing or uninitialized ({first_sentence}). "
        "A Keras 3 model saved with tf.saved_model.save (alone or inside a tf.Module) is left so: "
        "re-export it with model.export(path) (Keras 3) and serve that folder"
    )


def read_prediction_logs(path: Path, *, skip_torn_tail: bool = False) -> Iterator:
    """The ``PredictionLog`` protos of a TFRecord file (a warm-up file, a request log), in order.

    With ``skip_torn_tail``, a last record cut short (a writer killed mid-record) ends the file quietly;
    otherwise it raises, as a damaged warm-up file must fail the load.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = tf.compat.v1.io.tf_record_iterator(str(path))
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except tf.errors.DataLossError:
            if skip_torn_tail:
                return
            raise
        yield prediction_log_pb2.PredictionLog.FromString(record)


def _replay(servable: Servable, path: Path, iterations: int) -> int:
    count = 0
    try:
        for logged in read_prediction_logs(path):
            count += 1
            if count > MAX_RECORDS:
                raise ServingError(
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}", Code.INVALID_ARGUMENT
                )
            for _ in range(iterations):
                _run_logged_request(servable, logged)
    except ServingError as e:
        error = broken_model_error(e) or e
        raise ServingError(f"Failed to warm up model from {path}: {error.message}", error.code) from None
    except Exception as e:  # unreadable records, undecodable protos
        raise ServingError(
            f"Failed to warm up model from {path}: {type(e).__name__}: {e}", Code.INVALID_ARGUMENT
        ) from None
    return count * iterations


def _run_logged_request(servable: Servable, log_entry) -> None:
    import tensorflow as tf

    kind = log_entry.WhichOneof("log_type")
    if kind == "predict_log":
        request = log_entry.predict_log.request
        inputs = {alias: tf.make_ndarray(tensor) for alias, tensor in request.inputs.items()}
        servable.predict(request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs, list(request.output_filter))
    elif kind in ("classify_log", "regress_log"):
        request = getattr(log_entry, kind).request
        context, examples = _examples(request.input)
        method = servable.classify if kind == "classify_log" else servable.regress
        method(request.model_spec.signature_name, context, examples)
    else:
        raise ServingError(
            f"Unsupported warm-up log type {kind!r} (predict, classify and regress are)", Code.UNIMPLEMENTED
        )


def _examples(request_input) -> tuple[Features | None, list[Features]]:
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return None, [_features(e) for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        listed = request_input.example_list_with_context
        return _features(listed.context), [_features(e) for e in listed.examples]
    raise ServingError("Warm-up request has no examples", Code.INVALID_ARGUMENT)


def _features(example) -> Features:
    kinds = {"int64_list": "int64", "float_list": "float", "bytes_list": "bytes"}
    features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind is not None:
            features[name] = (kinds[kind], list(getattr(feature, kind).value))
    return features


def synthetic_inputs(signature: SignatureSpec) -> dict[str, np.ndarray] | None:
    """One row of zeros (or empty strings) per input, or None when an input's dtype or rank is unknown."""
    inputs = {}
    for alias, spec in signature.inputs.items():
        dtype = np.object_ if spec.dtype == "DT_STRING" else NUMPY_DTYPES.get(spec.dtype)
        if dtype is None or spec.shape is None:
            return None
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        inputs[alias] = np.full(shape, b"", dtype=object) if dtype is np.object_ else np.zeros(shape, dtype)
    return inputs


def _synthetic(servable: Servable) -> int:
    count = 0
    for name, signature in servable.signatures.items():
        if name.startswith("__") or not signature.inputs:
            continue  # __saved_model_init_op and the like are not callable signatures
        try:
            if signature.method_name in (CLASSIFY_METHOD, REGRESS_METHOD):
                method = servable.classify if signature.method_name == CLASSIFY_METHOD else servable.regress
                method(name, None, [{}])
            else:
                inputs = synthetic_inputs(signature)
                if inputs is None:
                    continue
                servable.predict(name, inputs)
        except ServingError as e:
            broken = broken_model_error(e)
            if broken is not None:
                raise broken from None
            # Made-up input may be refused by a model that answers real requests; the first of those warms it.
            log.info("synthetic warm-up of signature %s skipped, the model refused made-up input: %s", name, e.message)
            continue
        count += 1
    return count


def replay_leniently(servable: Servable, path: Path, limit: int = MAX_RECORDS) -> tuple[int, int]:
    """Run up to ``limit`` records of the warm-up file ``path``, skipping (and logging) each one the servable refuses;
    returns (how many ran, how many were skipped). Nothing here fails a load: an unreadable file ends the replay."""
    ran = skipped = 0
    try:
        for logged in read_prediction_logs(path, skip_torn_tail=True):
            if ran + skipped >= min(limit, MAX_RECORDS):
                break
            try:
                _run_logged_request(servable, logged)
                ran += 1
            except Exception as e:  # a changed signature or shape refuses a request recorded for an older version
                skipped += 1
                log.info("warm-up record %d of %s skipped: %s", ran + skipped, path, getattr(e, "message", e))
    except Exception as e:  # removed meanwhile, or damaged: the records that ran are warm-up enough
        log.warning("warm-up from %s stopped after %d records: %s: %s", path, ran + skipped, type(e).__name__, e)
    return ran, skipped
