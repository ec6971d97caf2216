"""KServe's clients, unchanged, against real appliance processes: ``InferenceRESTClient`` with
``RESTConfig(protocol="v2")`` and ``InferenceGRPCClient`` (whose typed ``contents`` tritonclient never sends).

kserve's generated code and tritonclient's declare the same ``inference.*`` messages, which protobuf refuses to
load into one process; so the clients run in a child process, tests/v2_kserve_calls.py, which gets the calls as
JSON and prints what it got back. The answers are checked here, against the same process's TF Serving REST API,
TensorFlow on the SavedModel, or the digit each sample image shows (tests/v2_expected.py). The servers are
tests/conftest.py's shared ones: nothing here changes them.

    PYTHONPATH=$PWD python -m pytest tests/test_v2_kserve_client.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import REPO
from .v2_expected import (
    CONCURRENCY,
    ROUNDS,
    UNKNOWN,
    assert_same,
    digit_pixels,
    load_multi_io,
    random_pixels,
    tfs_cases,
    tfs_predict,
)
from .v2_kserve_calls import from_json, to_json

TIMEOUT = 300


def run_kserve(calls: dict) -> dict:
    """Each call's answer, made by KServe's client in a child process, in the order given."""
    child = subprocess.run(
        [sys.executable, "-m", "tests.v2_kserve_calls"],
        cwd=REPO,
        input=json.dumps({"calls": calls}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


WIRES = ["rest", "grpc"]
ERRORS = {"rest": {"not found": 404, "invalid": 400}, "grpc": {"not found": "NOT_FOUND", "invalid": "INVALID_ARGUMENT"}}


def at(server, wire: str) -> dict:
    """Where a call goes: the REST client's base URL or the gRPC client's address."""
    return {"url": server.url} if wire == "rest" else {"target": server.grpc_address}


def infer_call(where: dict, model: str, inputs: dict, binary: bool, outputs=None, **more) -> dict:
    return {
        "op": "infer",
        **where,
        "model": model,
        "inputs": {name: to_json(array) for name, array in inputs.items()},
        "binary": binary,
        "outputs": outputs,
        **more,
    }


@pytest.fixture(scope="module")
def load_rows():
    return random_pixels(CONCURRENCY * ROUNDS, seed=17)


@pytest.fixture(scope="module")
def cases(tfs_direct_server, tfs_testdata):
    return tfs_cases(tfs_direct_server, load_multi_io(tfs_testdata))


@pytest.fixture(scope="module")
def answers(bundled_server, tfs_direct_server, load_rows, cases):
    """KServe's answers to every call of the module, by wire then name, made in one child process (on each wire,
    the errors before the load)."""
    pixels, _ = digit_pixels()
    calls = {}
    for wire in WIRES:
        bundled, tfs = at(bundled_server, wire), at(tfs_direct_server, wire)
        mine = {
            "live": {"op": "live", **bundled},
            "ready": {"op": "ready", **bundled},
            "digits ready": {"op": "model_ready", **bundled, "model": "digits"},
            "unknown ready": {"op": "model_ready", **bundled, "model": UNKNOWN},
            "unknown model": infer_call(bundled, UNKNOWN, {"pixels": pixels}, True),
            "wrong datatype": infer_call(bundled, "digits", {"pixels": pixels.astype(np.float64)}, False),
            "by name": infer_call(bundled, "digits", {"pixels": pixels}, False, ["class"]),
            "binary outputs": infer_call(
                bundled, "digits", {"pixels": pixels}, True, parameters={"binary_data_output": True}
            ),
        }
        for binary in (False, True):
            mine[f"digits {binary}"] = infer_call(
                bundled, "digits", {"pixels": pixels}, binary, ["probabilities", "class"], id=f"k-{binary}"
            )
            for model, inputs, expected in cases:
                mine[f"{model} {binary}"] = infer_call(tfs, model, inputs, binary, list(expected))
        for round_ in range(ROUNDS):
            rows = load_rows[round_ * CONCURRENCY : (round_ + 1) * CONCURRENCY]
            mine[f"load {round_}"] = {
                "op": "gather",
                "calls": [
                    infer_call(bundled, "digits", {"pixels": rows[i : i + 1]}, i % 2 == 0) for i in range(len(rows))
                ],
            }
        calls.update({f"{wire} {key}": call for key, call in mine.items()})
    x = np.array([[1.0], [4.0]], np.float32)
    for version in ("123", "124"):
        calls[f"grpc version {version}"] = infer_call(
            at(tfs_direct_server, "grpc"), "two_versions", {"x": x}, True, version=version
        )
    answered = run_kserve(calls)
    return {
        wire: {key.removeprefix(f"{wire} "): a for key, a in answered.items() if key.startswith(wire)} for wire in WIRES
    }


def outputs_of(answer: dict, binary: bool | None = None) -> dict:
    """The outputs of an inference answer as arrays; over REST, checked to have come as binary data or as JSON
    (gRPC answers raw contents always)."""
    assert "outputs" in answer, answer
    if binary is not None and answer["binary"] is not None:
        assert answer["binary"] == binary
    return {name: from_json(output) for name, output in answer["outputs"].items()}


@pytest.mark.parametrize("wire", WIRES)
def test_kserve_health(answers, wire):
    assert answers[wire]["live"] == {"value": True}
    assert answers[wire]["ready"] == {"value": True}
    assert answers[wire]["digits ready"] == {"value": True}
    assert answers[wire]["unknown ready"] == {"value": False}


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_infer_digits(answers, bundled_server, wire, binary):
    """REST: JSON data or binary data; gRPC: typed contents or raw contents."""
    pixels, labels = digit_pixels()
    answer = answers[wire][f"digits {binary}"]
    outputs = outputs_of(answer, binary)
    assert answer["id"] == f"k-{binary}"
    assert outputs["class"].tolist() == labels
    for name, value in tfs_predict(bundled_server, "digits", {"pixels": pixels}).items():
        assert_same(name, outputs[name], value)


@pytest.mark.parametrize("wire", WIRES)
def test_kserve_outputs_by_name_and_all_binary(answers, wire):
    _, labels = digit_pixels()
    by_name = outputs_of(answers[wire]["by name"], binary=False)
    assert list(by_name) == ["class"]
    assert by_name["class"].tolist() == labels
    everything = outputs_of(answers[wire]["binary outputs"], binary=True)
    assert set(everything) == {"probabilities", "class"}
    assert everything["class"].tolist() == labels


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_infer_tf_serving_models(answers, cases, wire, binary):
    for model, _, expected in cases:
        outputs = outputs_of(answers[wire][f"{model} {binary}"], binary)
        for name, value in expected.items():
            assert_same(f"{model}/{name}", outputs[name], value)


def test_kserve_grpc_versions(answers, tfs_direct_server):
    x = np.array([[1.0], [4.0]], np.float32)
    for version in ("123", "124"):
        answer = answers["grpc"][f"version {version}"]
        assert answer.get("version") == version, answer
        assert_same("y", outputs_of(answer)["y"], tfs_predict(tfs_direct_server, "two_versions", {"x": x})["y"])


@pytest.mark.parametrize("wire", WIRES)
def test_kserve_errors(answers, wire):
    """The status (HTTPStatusError's, the RpcError's code) and the server's message (over REST, KServe's client
    reads it from a JSON body); the server goes on answering (the load below runs after these)."""
    unknown = answers[wire]["unknown model"]
    assert unknown.get("error", {}).get("status") == ERRORS[wire]["not found"], unknown
    assert UNKNOWN in unknown["error"]["message"]
    wrong = answers[wire]["wrong datatype"]
    assert wrong.get("error", {}).get("status") == ERRORS[wire]["invalid"], wrong
    assert "pixels" in wrong["error"]["message"]
    assert "FP32" in wrong["error"]["message"]


@pytest.mark.parametrize("wire", WIRES)
def test_kserve_concurrent_load(answers, bundled_server, load_rows, wire):
    """CONCURRENCY requests at once through asyncio.gather, ROUNDS times: each answer is its row's."""
    expected = tfs_predict(bundled_server, "digits", {"pixels": load_rows})
    for round_ in range(ROUNDS):
        for offset, answer in enumerate(answers[wire][f"load {round_}"]["value"]):
            i = round_ * CONCURRENCY + offset
            outputs = outputs_of(answer)
            for name, value in expected.items():
                assert_same(f"row {i}: {name}", outputs[name], value[i : i + 1])
