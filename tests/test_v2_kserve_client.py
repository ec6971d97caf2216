"""KServe's clients, unchanged, against real appliance processes: ``InferenceRESTClient`` with
``RESTConfig(protocol="v2")`` and ``InferenceGRPCClient`` (whose typed ``contents`` tritonclient never sends).

kserve's generated code (``grpc_predict_v2.proto``) and tritonclient's (``grpc_service.proto``, which the appliance
serves from and tests/test_v2_clients.py calls through) declare the same ``inference.*`` messages in different
files, and protobuf refuses to load both into one process. So the clients run in a child process, this module run
as a script, which imports kserve and never tritonclient: it gets the calls as JSON on stdin and prints what it
got back. The answers are checked here, against the same process's TF Serving REST API, TensorFlow on the
SavedModel, or the digit each sample image shows. The servers are tests/conftest.py's shared ones: nothing here
changes them.

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


def kserve_request(call: dict):
    """kserve's InferRequest: inputs as data (JSON; gRPC's typed contents) or binary (raw), outputs asked for
    by name (binary or not), or all of them (``parameters`` may ask for them binary)."""
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
    return InferRequest(
        call["model"],
        inputs,
        request_id=call.get("id"),
        parameters=call.get("parameters"),
        request_outputs=outputs or None,
        model_version=call.get("version"),
    )


def kserve_response(response, binary: bool | None) -> dict:
    return {
        "id": response.id,
        "version": response.model_version,
        "binary": binary,
        "outputs": {
            output.name: {**to_json(output.as_numpy()), "datatype": output.datatype} for output in response.outputs
        },
    }


class KServeClients:
    """KServe's REST client (protocol v2), and its gRPC client for each address a call names."""

    def __init__(self):
        from kserve import InferenceRESTClient, RESTConfig

        self.rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        self._grpc: dict = {}

    def grpc(self, target: str):
        from kserve import InferenceGRPCClient

        if target not in self._grpc:
            self._grpc[target] = InferenceGRPCClient(target, timeout=60)
        return self._grpc[target]

    async def close(self) -> None:
        await self.rest.close()
        for client in self._grpc.values():
            await client.close()


async def rest_call(client, call: dict) -> dict:
    url = call["url"]
    if call["op"] == "live":
        return {"value": await client.is_server_live(url)}
    if call["op"] == "ready":
        return {"value": await client.is_server_ready(url)}
    if call["op"] == "model_ready":
        return {"value": await client.is_model_ready(url, call["model"])}
    headers: dict = {}
    response = await client.infer(url, kserve_request(call), model_name=call["model"], response_headers=headers)
    # kserve turns binary outputs into JSON data as it reads them: the header says how they came
    return kserve_response(response, any(key.lower() == "inference-header-content-length" for key in headers))


async def grpc_call(client, call: dict) -> dict:
    if call["op"] == "live":
        return {"value": await client.is_server_live()}
    if call["op"] == "ready":
        return {"value": await client.is_server_ready()}
    if call["op"] == "model_ready":
        return {"value": await client.is_model_ready(call["model"])}
    return kserve_response(await client.infer(kserve_request(call)), None)


async def kserve_call(clients: KServeClients, call: dict) -> dict:
    """One call's answer as JSON: ``value``, an inference's ``outputs``, ``error`` (the HTTP status or the gRPC
    code's name, and the message) or ``exception`` (anything else the client raised)."""
    import grpc
    import httpx

    try:
        if call["op"] == "gather":
            return {"value": await asyncio.gather(*(kserve_call(clients, c) for c in call["calls"]))}
        if "target" in call:
            return await grpc_call(clients.grpc(call["target"]), call)
        return await rest_call(clients.rest, call)
    except httpx.HTTPStatusError as error:
        return {"error": {"status": error.response.status_code, "message": str(error)}}
    except grpc.RpcError as error:
        return {"error": {"status": error.code().name, "message": error.details()}}
    except Exception as error:
        return {"exception": f"{type(error).__name__}: {error}"}


async def kserve_calls(calls: dict) -> dict:
    clients = KServeClients()
    try:
        return {key: await kserve_call(clients, call) for key, call in calls.items()}
    finally:
        await clients.close()


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
def cases(tfs_direct_server, multi_io):
    return tfs_cases(tfs_direct_server, multi_io)


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


if __name__ == "__main__":
    print(json.dumps(asyncio.run(kserve_calls(json.load(sys.stdin)["calls"]))))
