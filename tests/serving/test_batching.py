"""Adaptive batching on real SavedModels: merged calls give each request its own answer, and its own error.

The batcher's ``run`` is the real servable's predict; to make requests meet in
the queue deterministically, the first call is held at a gate until the others
have queued behind it (the model call itself is never replaced).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from appliance.errors import Code, InvalidArgument, ServingError
from appliance.serving.batching import (
    PER_MODEL_FILE,
    QUEUE_FULL,
    BatchingParameters,
    BatchingPolicy,
    BatchingServable,
    SignatureBatcher,
    is_batchable,
    parse_batching_parameters,
)
from appliance.serving.observer import ServingObserver
from appliance.serving.runtime import Servable, SignatureSpec, TensorSpec
from appliance.serving.runtime.local_tf import LocalTFRuntime

MODELS = Path(__file__).resolve().parents[2] / "models"


class _CheckedModel(tf.Module):
    """Doubles its input, refusing negative values (a request-dependent failure inside the model)."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def double(self, x):
        with tf.control_dependencies([tf.debugging.assert_non_negative(x, message="x must not be negative")]):
            return {"y": x * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def first_token(self, tokens):
        return {"first": tokens[:, 0], "length": tf.fill([tf.shape(tokens)[0]], tf.shape(tokens)[1])}


@pytest.fixture(scope="module")
def runtime():
    return LocalTFRuntime("cpu")


@pytest.fixture(scope="module")
def checked(runtime, tmp_path_factory):
    path = tmp_path_factory.mktemp("checked") / "1"
    model = _CheckedModel()
    tf.saved_model.save(
        model, str(path), signatures={"serving_default": model.double, "first_token": model.first_token}
    )
    servable = runtime.load(path)
    yield servable
    servable.close()


@pytest.fixture(scope="module")
def digits(runtime):
    servable = runtime.load(MODELS / "digits" / "2")
    yield servable
    servable.close()


class GatedRun:
    """The real predict of ``servable``, whose first call waits at a gate; records the row count of each call."""

    def __init__(self, servable, signature="serving_default"):
        self._servable = servable
        self._signature = signature
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def __call__(self, inputs, output_filter):
        self.calls.append(next(iter(inputs.values())).shape[0])
        if len(self.calls) == 1:
            self.entered.set()
            assert self.gate.wait(30)
        return self._servable.predict(self._signature, inputs, output_filter)


class Requests:
    """Runs ``batcher.predict`` for each input in its own thread; results or errors by index."""

    def __init__(self, batcher, inputs: list[dict], output_filter=()):
        self.results: dict[int, object] = {}
        self.threads = [
            threading.Thread(target=self._one, args=(batcher, i, x, output_filter)) for i, x in enumerate(inputs)
        ]

    def _one(self, batcher, index, inputs, output_filter):
        try:
            self.results[index] = batcher.predict(inputs, output_filter)
        except Exception as e:
            self.results[index] = e

    def start(self):
        for thread in self.threads:
            thread.start()

    def join(self):
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a request never got its answer"


def _wait_queued(batcher: SignatureBatcher, rows: int) -> None:
    deadline = time.monotonic() + 10
    while batcher._queued_rows < rows:
        assert time.monotonic() < deadline, "the requests never queued"
        time.sleep(0.005)


def _behind_a_held_call(batcher, run: GatedRun, inputs: list[dict], queued_rows: int, output_filter=()):
    """Send inputs[0] (held at the gate), queue the rest behind it, then open the gate; both Requests, finished."""
    first = Requests(batcher, inputs[:1], output_filter)
    first.start()
    assert run.entered.wait(10)
    rest = Requests(batcher, inputs[1:], output_filter)
    rest.start()
    _wait_queued(batcher, queued_rows)
    run.gate.set()
    first.join()
    rest.join()
    return first, rest


def _batcher(run, **parameters):
    batches = []
    parameters.setdefault("num_batch_threads", 1)
    batcher = SignatureBatcher(run, BatchingParameters(**parameters), lambda n, rows: batches.append((n, rows)))
    return batcher, batches


def test_queued_requests_merge_into_one_call_and_each_gets_its_own_rows(digits):
    rng = np.random.default_rng(0)
    inputs = [{"pixels": rng.uniform(0, 16, (rows, 64)).astype(np.float32)} for rows in (1, 3, 1, 2, 1)]
    run = GatedRun(digits)
    batcher, batches = _batcher(run, max_batch_size=32)
    first, rest = _behind_a_held_call(batcher, run, inputs, 7)
    assert run.calls == [1, 7]
    assert batches == [(1, 1), (4, 7)]
    answers = {0: first.results[0], **{i + 1: r for i, r in rest.results.items()}}
    for i, x in enumerate(inputs):
        expected = digits.predict("serving_default", x)
        assert answers[i].keys() == expected.keys()
        # Not bit-equal: oneDNN picks its kernels by batch shape and CPU, so a row's float32 sums run in
        # another order in a batch of 7 than of 3 (on an AMD EPYC: 2.3e-5 relative, 6.9e-7 absolute).
        np.testing.assert_allclose(answers[i]["probabilities"], expected["probabilities"], rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(answers[i]["class"], expected["class"])


def test_a_failing_request_fails_alone_and_its_batch_neighbours_succeed(checked):
    inputs = [
        {"x": np.array([[1, 2]], np.float32)},
        {"x": np.array([[3, 4]], np.float32)},
        {"x": np.array([[-1, 5]], np.float32)},
        {"x": np.array([[6, 7]], np.float32)},
    ]
    run = GatedRun(checked)
    batcher, _ = _batcher(run, max_batch_size=8)
    first, rest = _behind_a_held_call(batcher, run, inputs, 3)
    assert run.calls[:2] == [1, 3]  # the merged call, which fails, then each request on its own
    np.testing.assert_array_equal(first.results[0]["y"], [[2, 4]])
    np.testing.assert_array_equal(rest.results[0]["y"], [[6, 8]])
    np.testing.assert_array_equal(rest.results[2]["y"], [[12, 14]])
    error = rest.results[1]
    assert isinstance(error, ServingError) and error.code is Code.INVALID_ARGUMENT
    assert "x must not be negative" in error.message


def test_allowed_batch_sizes_pad_the_batch_with_copies_of_its_first_row(checked):
    inputs = [{"x": np.array([[i, i]], np.float32)} for i in range(4)]
    run = GatedRun(checked)
    batcher, batches = _batcher(run, max_batch_size=8, allowed_batch_sizes=(1, 2, 4, 8))
    _, rest = _behind_a_held_call(batcher, run, inputs, 3)
    assert run.calls == [1, 4]  # 3 rows padded to the next allowed size
    assert batches[1] == (3, 4)
    for i in range(1, 4):
        np.testing.assert_array_equal(rest.results[i - 1]["y"], [[2 * i, 2 * i]])


def test_variable_length_inputs_are_padded_when_asked_and_kept_apart_otherwise(checked):
    inputs = [{"tokens": np.array([[7, 8]])}, {"tokens": np.array([[9, 1, 2]])}, {"tokens": np.array([[4, 5]])}]
    for pad, expected_calls in ((True, [1, 2]), (False, [1, 1, 1])):
        run = GatedRun(checked, "first_token")
        batcher, _ = _batcher(run, max_batch_size=8, pad_variable_length_inputs=pad)
        _, rest = _behind_a_held_call(batcher, run, inputs, 2)
        assert sorted(run.calls) == sorted(expected_calls)
        assert {i: int(r["first"][0]) for i, r in rest.results.items()} == {0: 9, 1: 4}
        if pad:  # the padded row saw the longest length in its batch
            assert {int(r["length"][0]) for r in rest.results.values()} == {3}


class GatedServable(Servable):
    """The real ``servable``, whose first predict waits at a gate; records the shape of each predict's input."""

    def __init__(self, servable):
        self._servable = servable
        self.signatures = servable.signatures
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[tuple[int, ...]] = []

    def predict(self, signature_name, inputs, output_filter=()):
        self.calls.append(next(iter(inputs.values())).shape)
        if len(self.calls) == 1:
            self.entered.set()
            assert self.gate.wait(30)
        return self._servable.predict(signature_name, inputs, output_filter)

    def classify(self, signature_name, context, examples):
        return self._servable.classify(signature_name, context, examples)

    def regress(self, signature_name, context, examples):
        return self._servable.regress(signature_name, context, examples)

    def signature_defs_json(self):
        return self._servable.signature_defs_json()

    def close(self):
        pass


@pytest.mark.parametrize("pad", [False, True])
def test_a_request_off_the_signature_gets_its_own_error_at_once_and_never_joins_a_batch(digits, pad):
    gated = GatedServable(digits)
    servable = BatchingServable(
        gated, BatchingParameters(max_batch_size=16, num_batch_threads=1, pad_variable_length_inputs=pad)
    )
    client = SimpleNamespace(predict=lambda inputs, output_filter: servable.predict("", inputs, output_filter))
    rng = np.random.default_rng(3)
    good = [{"pixels": rng.uniform(0, 16, (1, 64)).astype(np.float32)} for _ in range(3)]
    bad = [{"pixels": np.ones((1, 3), np.float32)}, {"pixels": np.ones((1, 64), np.float64)}]
    first = Requests(client, good[:1])
    first.start()
    assert gated.entered.wait(10)
    queued = Requests(client, good[1:])
    queued.start()
    _wait_queued(servable._batchers["serving_default"], 2)
    refused = Requests(client, bad)
    refused.start()
    refused.join()  # answered while the batch's first call is still held
    sent = ["float32 [1, 3]", "float64 [1, 64]"]
    for i, error in refused.results.items():
        assert isinstance(error, InvalidArgument), error
        assert error.message == f'input "pixels" expects float32 [-1, 64]; got {sent[i]}'
    gated.gate.set()
    first.join()
    queued.join()
    assert gated.calls == [(1, 64), (1, 3), (1, 64), (2, 64)]  # the two good ones queued merged into one call
    for inputs, answer in zip(good, [first.results[0], queued.results[0], queued.results[1]]):
        np.testing.assert_array_equal(answer["class"], digits.predict("", inputs)["class"])


def test_a_full_queue_refuses_with_unavailable(digits):
    run = GatedRun(digits)
    batcher, _ = _batcher(run, max_batch_size=2, max_enqueued_batches=1)
    one_row = {"pixels": np.zeros((1, 64), np.float32)}
    running = Requests(batcher, [one_row])
    running.start()
    assert run.entered.wait(10)
    queued = Requests(batcher, [one_row, one_row])
    queued.start()
    _wait_queued(batcher, 2)
    with pytest.raises(ServingError) as refused:
        batcher.predict(one_row, ())
    assert refused.value.code is Code.UNAVAILABLE and refused.value.message == QUEUE_FULL
    run.gate.set()
    running.join()
    queued.join()
    assert all(isinstance(r, dict) for r in queued.results.values())


def test_a_request_waiting_past_its_deadline_gets_deadline_exceeded_and_leaves_the_queue(digits):
    run = GatedRun(digits)
    batcher = SignatureBatcher(
        run, BatchingParameters(max_batch_size=8, num_batch_threads=1), lambda n, rows: None, wait_seconds=0.2
    )
    one_row = {"pixels": np.zeros((1, 64), np.float32)}
    running = Requests(batcher, [one_row])
    running.start()
    assert run.entered.wait(10)
    with pytest.raises(ServingError) as late:
        batcher.predict(one_row, ())
    assert late.value.code is Code.DEADLINE_EXCEEDED
    assert batcher._queued_rows == 0
    run.gate.set()
    running.join()
    assert isinstance(running.results[0], dict)


@pytest.mark.parametrize("wait_seconds", [None, 30.0])
def test_a_request_waits_for_its_batch_until_its_own_deadline_at_most(digits, wait_seconds):
    gated = GatedServable(digits)
    servable = BatchingServable(
        gated, BatchingParameters(max_batch_size=8, num_batch_threads=1), wait_seconds=wait_seconds
    )
    client = SimpleNamespace(predict=lambda inputs, output_filter: servable.predict("", inputs, output_filter))
    one_row = {"pixels": np.zeros((1, 64), np.float32)}
    running = Requests(client, [one_row])
    running.start()
    assert gated.entered.wait(10)
    with pytest.raises(ServingError) as late:  # a gRPC client's deadline, shorter than the server's own limit
        servable.predict("", one_row, deadline=time.monotonic() + 0.2)
    assert late.value.code is Code.DEADLINE_EXCEEDED
    assert servable._batchers["serving_default"]._queued_rows == 0
    gated.gate.set()
    running.join()
    assert isinstance(running.results[0], dict)
    assert len(gated.calls) == 1  # the late request never ran


def test_requests_larger_than_the_batch_limit_or_with_disagreeing_rows_run_alone(checked):
    calls = []

    def run(inputs, output_filter):
        calls.append({a: v.shape for a, v in inputs.items()})
        return checked.predict("serving_default", inputs, output_filter)

    batcher, batches = _batcher(run, max_batch_size=2)
    answer = batcher.predict({"x": np.ones((5, 2), np.float32)}, ())
    assert answer["y"].shape == (5, 2)
    with pytest.raises(ServingError, match="unknown"):
        batcher.predict({"x": np.ones((1, 2), np.float32), "unknown": np.ones((3,))}, ())
    assert calls == [{"x": (5, 2)}, {"x": (1, 2), "unknown": (3,)}]
    assert batches == []  # neither went through the queue


def test_concurrent_clients_through_the_servable_get_their_own_answers(digits):
    """No gate: 16 threads hammer a BatchingServable; every answer matches an unbatched call on the same rows."""
    merged = []
    servable = BatchingServable(
        digits, BatchingParameters(max_batch_size=16, num_batch_threads=1), lambda signature, n, rows: merged.append(n)
    )
    rng = np.random.default_rng(1)
    inputs = [{"pixels": rng.uniform(0, 16, (1 + i % 3, 64)).astype(np.float32)} for i in range(16)]
    expected = [digits.predict("serving_default", x)["probabilities"] for x in inputs]
    failures = []

    def client(i):
        for _ in range(30):
            got = servable.predict("", inputs[i])["probabilities"]
            if not np.allclose(got, expected[i], rtol=1e-4, atol=1e-6):  # as above: batch shapes change sums
                failures.append(i)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert sum(merged) == 16 * 30  # every request was counted in exactly one call


class HoldableRun:
    """The real predict of ``servable``; while ``holding``, each call waits at the gate (counted in ``held``)."""

    def __init__(self, servable):
        self._servable = servable
        self.holding = False
        self.gate = threading.Event()
        self.held = threading.Semaphore(0)

    def __call__(self, inputs, output_filter):
        if self.holding:
            self.held.release()
            assert self.gate.wait(30)
        return self._servable.predict("serving_default", inputs, output_filter)


@pytest.mark.parametrize("num_batch_threads,batch_timeout_micros", [(2, 0), (3, 0), (2, 300), (4, 300)])
def test_several_batch_threads_pass_their_turns_on_and_all_run_again_once_idle(
    digits, num_batch_threads, batch_timeout_micros
):
    """Many clients, several runners: each answer is its own, and afterwards every runner's slot is free again.

    A runner leaving hands its slot to one waiting request that has none; a slot
    given twice to one request, or to a request whose thread already runs, is
    lost, until fewer calls than ``num_batch_threads`` can run at once.
    """
    run = HoldableRun(digits)
    batcher, _ = _batcher(
        run, max_batch_size=8, num_batch_threads=num_batch_threads, batch_timeout_micros=batch_timeout_micros
    )
    rng = np.random.default_rng(2)
    inputs = [{"pixels": rng.uniform(0, 16, (1, 64)).astype(np.float32)} for _ in range(12)]
    expected = [digits.predict("serving_default", x)["class"] for x in inputs]
    wrong = []

    def client(i):
        for _ in range(40):
            if batcher.predict(inputs[i], ())["class"] != expected[i]:
                wrong.append(i)

    clients = [threading.Thread(target=client, args=(i,)) for i in range(len(inputs))]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
        assert not thread.is_alive(), "a request never got its answer"
    assert not wrong
    assert batcher._queued_rows == 0 and batcher._runners == 0
    run.holding = True  # now num_batch_threads requests that cannot share a batch must all be running at once
    filters = [(), ("class",), ("probabilities",), ("class", "probabilities")][:num_batch_threads]
    held = [Requests(batcher, inputs[:1], output_filter) for output_filter in filters]
    for requests in held:
        requests.start()
    for _ in filters:
        assert run.held.acquire(timeout=10), "fewer calls than num_batch_threads ran at once"
    run.gate.set()
    for requests in held:
        requests.join()
        assert isinstance(requests.results[0], dict)


def test_parameters_text_proto_with_tf_servings_defaults_and_checks():
    parameters = parse_batching_parameters("""
        max_batch_size { value: 64 }
        batch_timeout_micros { value: 500 }
        num_batch_threads { value: 3 }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 64
        pad_variable_length_inputs: true
        thread_pool_name { value: "batch_threads" }
    """)
    assert parameters == BatchingParameters(
        max_batch_size=64,
        batch_timeout_micros=500,
        num_batch_threads=3,
        allowed_batch_sizes=(8, 64),
        pad_variable_length_inputs=True,
    )
    assert parse_batching_parameters("").max_batch_size == 1000  # TF Serving's default
    for text, message in (
        ("max_batch_size: 3", "not a valid BatchingParameters"),
        ("no_such_field { value: 1 }", "not a valid BatchingParameters"),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "must equal max_batch_size"),
        ("allowed_batch_sizes: 4 allowed_batch_sizes: 2", "increasing order"),
        ("num_batch_threads { value: 0 }", "must be positive"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            parse_batching_parameters(text)


def _signature(input_shape, output_shape) -> SignatureSpec:
    return SignatureSpec(
        "s",
        "tensorflow/serving/predict",
        {"x": TensorSpec("x", "DT_FLOAT", input_shape, "x:0")},
        {"y": TensorSpec("y", "DT_FLOAT", output_shape, "y:0")},
    )


def test_only_signatures_with_an_unknown_batch_dimension_everywhere_are_batchable():
    assert is_batchable(_signature((-1, 4), (-1,)))
    assert not is_batchable(_signature((1, 4), (-1,)))
    assert not is_batchable(_signature((-1, 4), ()))
    assert not is_batchable(_signature(None, (-1,)))


def test_policy_reads_a_versions_own_parameters_and_obeys_the_switch(tmp_path, digits):
    own = tmp_path / "own"
    own.mkdir()
    (own / PER_MODEL_FILE).write_text("max_batch_size { value: 4 }")
    plain = tmp_path / "plain"
    plain.mkdir()
    default = BatchingParameters(max_batch_size=9)
    assert BatchingPolicy(None, default).parameters_for(own).max_batch_size == 4
    assert BatchingPolicy(None, default).parameters_for(plain) is None
    assert BatchingPolicy(True, default).parameters_for(plain) == default
    assert BatchingPolicy(True, default).parameters_for(own).max_batch_size == 4
    assert BatchingPolicy(False, default).parameters_for(own) is None
    wrapped = BatchingPolicy(True, default).wrap(digits, plain, "digits", 2, ServingObserver())
    assert isinstance(wrapped, BatchingServable) and wrapped.parameters == default
    assert BatchingPolicy(False).wrap(digits, own, "digits", 2, ServingObserver()) is digits
    (plain / PER_MODEL_FILE).write_text("max_batch_size: 4")
    with pytest.raises(InvalidArgument, match=PER_MODEL_FILE):
        BatchingPolicy(None).parameters_for(plain)


def test_without_per_model_parameters_a_versions_own_file_is_ignored(tmp_path, digits):
    """--enable_per_model_batching_parameters=false: TF Serving's default, where only the global parameters count."""
    own = tmp_path / "own"
    own.mkdir()
    (own / PER_MODEL_FILE).write_text("max_batch_size { value: 4 }")
    default = BatchingParameters(max_batch_size=9)
    assert BatchingPolicy(None, default, per_model=False).parameters_for(own) is None
    assert BatchingPolicy(True, default, per_model=False).parameters_for(own) == default
    assert BatchingPolicy(None, per_model=False).wrap(digits, own, "digits", 2, ServingObserver()) is digits
    bundled = MODELS / "digits" / "2"
    assert (bundled / PER_MODEL_FILE).is_file()
    assert isinstance(BatchingPolicy(None).wrap(digits, bundled, "digits", 2, ServingObserver()), BatchingServable)
    assert BatchingPolicy(None, per_model=False).wrap(digits, bundled, "digits", 2, ServingObserver()) is digits
