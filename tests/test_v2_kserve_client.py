"""KServe's ``InferenceRESTClient`` with ``RESTConfig(protocol="v2")``, unchanged, against real appliance processes.

kserve's generated code (``grpc_predict_v2.proto``) and tritonclient's (``grpc_service.proto``, which the appliance
serves from and tests/test_v2_clients.py calls through) declare the same ``inference.*`` messages in different
files, and protobuf refuses to load both into one process. So the client runs in a child process, this module run
as a script, which imports kserve and never tritonclient: it gets the calls as JSON on stdin and prints what it
got back. The answers are checked here, against the same process's TF Serving REST API, TensorFlow on the
SavedModel, or the digit each sample image shows.

    PYTHONPATH=$PWD python -m pytest tests/test_v2_kserve_client.py -q
    echo '{"calls": {"live": {"url": "http://127.0.0.1:8501", "op": "live"}}}' | python -m tests.test_v2_kserve_client
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import REPO

if __name__ != "__main__":  # pytest's process; the child must not load tritonclient's generated code
    from .test_v2_clients import (
        CONCURRENCY,
        ROUNDS,
        UNKNOWN,
        assert_same,
        digit_pixels,
        multi_io,  # noqa: F401 (the fixture tfs_cases needs)
        random_pixels,
        tfs_cases,
        tfs_predict,
    )

TIMEOUT = 300


# -- the child: KServe's client making the calls -------------------------------------------------------------------


def to_json(array: np.ndarray) -> dict:
    """An array as JSON: its numpy dtype, shape and flat data (BYTES elements base64-encoded)."""
    if array.dtype == object:
        data = [base64.b64encode(v.encode() if isinstance(v, str) else bytes(v)).decode() for v in array.reshape(-1)]
    else:
        data = array.reshape(-1).tolist()
    return {"dtype": str(array.dtype), "shape": list(array.shape), "data": data}


def from_json(tensor: dict) -> np.ndarray:
    if tensor["dtype"] == "object":
        values = np.empty(len(tensor["data"]), dtype=object)
        values[:] = [base64.b64decode(v) for v in tensor["data"]]
        return values.reshape(tensor["shape"])
    return np.array(tensor["data"], dtype=tensor["dtype"]).reshape(tensor["shape"])


async def kserve_infer(client, call: dict) -> dict:
    """One ``client.infer`` with kserve's InferRequest; inputs as JSON data or binary, outputs asked for by name
    (binary or not), or all of them (``parameters`` may ask for them binary)."""
    from kserve import InferInput, InferRequest
    from kserve.protocol.infer_type import RequestedOutput
    from kserve.utils.numpy_codec import from_np_dtype

    inputs = []
    for name, tensor in call["inputs"].items():
        array = from_json(tensor)
        infer_input = InferInput(name, list(array.shape), from_np_dtype(array.dtype))
        infer_input.set_data_from_numpy(array, binary_data=call["binary"])
        inputs.append(infer_input)
    outputs = [RequestedOutput(name, {"binary_data": call["binary"]}) for name in call.get("outputs") or ()]
    request = InferRequest(
        call["model"],
        inputs,
        request_id=call.get("id"),
        parameters=call.get("parameters"),
        request_outputs=outputs or None,
    )
    headers: dict = {}
    response = await client.infer(call["url"], request, model_name=call["model"], response_headers=headers)
    return {
        "id": response.id,
        # kserve turns binary outputs into JSON data as it reads them: the header says how they came
        "binary": any(key.lower() == "inference-header-content-length" for key in headers),
        "outputs": {
            output.name: {**to_json(output.as_numpy()), "datatype": output.datatype} for output in response.outputs
        },
    }


async def kserve_call(client, call: dict) -> dict:
    """One call's answer as JSON: ``value``, an inference's ``outputs``, ``error`` (an HTTP error's status and
    message) or ``exception`` (anything else the client raised)."""
    import httpx

    try:
        if call["op"] == "live":
            return {"value": await client.is_server_live(call["url"])}
        if call["op"] == "ready":
            return {"value": await client.is_server_ready(call["url"])}
        if call["op"] == "model_ready":
            return {"value": await client.is_model_ready(call["url"], call["model"])}
        if call["op"] == "gather":
            return {"value": await asyncio.gather(*(kserve_call(client, c) for c in call["calls"]))}
        return await kserve_infer(client, call)
    except httpx.HTTPStatusError as error:
        return {"error": {"status": error.response.status_code, "message": str(error)}}
    except Exception as error:
        return {"exception": f"{type(error).__name__}: {error}"}


async def kserve_calls(calls: dict) -> dict:
    from kserve import InferenceRESTClient, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    try:
        return {key: await kserve_call(client, call) for key, call in calls.items()}
    finally:
        await client.close()


# -- pytest's side -------------------------------------------------------------------------------------------------


def run_kserve(calls: dict) -> dict:
    """Each call's answer, made by KServe's client in a child process, in the order given."""
    child = subprocess.run(
        [sys.executable, "-m", "tests.test_v2_kserve_client"],
        cwd=REPO,
        input=json.dumps({"calls": calls}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def infer_call(url: str, model: str, inputs: dict, binary: bool, outputs=None, **more) -> dict:
    return {
        "op": "infer",
        "url": url,
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
def cases(tfs_direct_server, multi_io):
    return tfs_cases(tfs_direct_server, multi_io)


@pytest.fixture(scope="module")
def answers(bundled_server, tfs_direct_server, load_rows, cases):
    """KServe's answers to every call of the module, made in one child process (errors before the load)."""
    url = bundled_server.url
    pixels, _ = digit_pixels()
    calls = {
        "live": {"op": "live", "url": url},
        "ready": {"op": "ready", "url": url},
        "digits ready": {"op": "model_ready", "url": url, "model": "digits"},
        "unknown ready": {"op": "model_ready", "url": url, "model": UNKNOWN},
        "unknown model": infer_call(url, UNKNOWN, {"pixels": pixels}, True),
        "wrong datatype": infer_call(url, "digits", {"pixels": pixels.astype(np.float64)}, False),
        "by name": infer_call(url, "digits", {"pixels": pixels}, False, ["class"]),
        "binary outputs": infer_call(url, "digits", {"pixels": pixels}, True, parameters={"binary_data_output": True}),
    }
    for binary in (False, True):
        calls[f"digits {binary}"] = infer_call(
            url, "digits", {"pixels": pixels}, binary, ["probabilities", "class"], id=f"k-{binary}"
        )
        for model, inputs, expected in cases:
            calls[f"{model} {binary}"] = infer_call(tfs_direct_server.url, model, inputs, binary, list(expected))
    for round_ in range(ROUNDS):
        rows = load_rows[round_ * CONCURRENCY : (round_ + 1) * CONCURRENCY]
        calls[f"load {round_}"] = {
            "op": "gather",
            "url": url,
            "calls": [infer_call(url, "digits", {"pixels": rows[i : i + 1]}, i % 2 == 0) for i in range(len(rows))],
        }
    return run_kserve(calls)


def outputs_of(answer: dict, binary: bool | None = None) -> dict:
    """The outputs of an inference answer as arrays, checked to have come as binary data or as JSON."""
    assert "outputs" in answer, answer
    if binary is not None:
        assert answer["binary"] == binary
    return {name: from_json(output) for name, output in answer["outputs"].items()}


def test_kserve_health(answers):
    assert answers["live"] == {"value": True}
    assert answers["ready"] == {"value": True}
    assert answers["digits ready"] == {"value": True}
    assert answers["unknown ready"] == {"value": False}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_infer_digits(answers, bundled_server, binary):
    pixels, labels = digit_pixels()
    answer = answers[f"digits {binary}"]
    outputs = outputs_of(answer, binary)
    assert answer["id"] == f"k-{binary}"
    assert outputs["class"].tolist() == labels
    for name, value in tfs_predict(bundled_server, "digits", {"pixels": pixels}).items():
        assert_same(name, outputs[name], value)


def test_kserve_outputs_by_name_and_all_binary(answers):
    _, labels = digit_pixels()
    by_name = outputs_of(answers["by name"], binary=False)
    assert list(by_name) == ["class"]
    assert by_name["class"].tolist() == labels
    everything = outputs_of(answers["binary outputs"], binary=True)
    assert set(everything) == {"probabilities", "class"}
    assert everything["class"].tolist() == labels


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_infer_tf_serving_models(answers, cases, binary):
    for model, _, expected in cases:
        outputs = outputs_of(answers[f"{model} {binary}"], binary)
        for name, value in expected.items():
            assert_same(f"{model}/{name}", outputs[name], value)


def test_kserve_errors(answers):
    """HTTPStatusError with the status, and the server's ``error`` in its message (KServe reads it from a JSON
    body); the server goes on answering (the load below runs after these)."""
    unknown = answers["unknown model"]["error"]
    assert unknown["status"] == 404
    assert UNKNOWN in unknown["message"]
    wrong = answers["wrong datatype"]["error"]
    assert wrong["status"] == 400
    assert "pixels" in wrong["message"]
    assert "FP32" in wrong["message"]


def test_kserve_concurrent_load(answers, bundled_server, load_rows):
    """CONCURRENCY requests at once through asyncio.gather, ROUNDS times: each answer is its row's."""
    expected = tfs_predict(bundled_server, "digits", {"pixels": load_rows})
    for round_ in range(ROUNDS):
        for offset, answer in enumerate(answers[f"load {round_}"]["value"]):
            i = round_ * CONCURRENCY + offset
            outputs = outputs_of(answer)
            for name, value in expected.items():
                assert_same(f"row {i}: {name}", outputs[name], value[i : i + 1])


if __name__ == "__main__":
    print(json.dumps(asyncio.run(kserve_calls(json.load(sys.stdin)["calls"]))))
