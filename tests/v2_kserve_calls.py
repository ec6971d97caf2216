"""KServe's clients making the v2 calls tests/test_v2_kserve_client.py gives them, in a process of their own.

kserve's generated code (``grpc_predict_v2.proto``) and tritonclient's (``grpc_service.proto``, which the appliance
serves from and tests/test_v2_clients.py calls through) declare the same ``inference.*`` messages in different
files, and protobuf refuses to load both into one process: this module imports kserve and never tritonclient (nor
anything that does). It reads the calls as JSON on stdin and prints each one's answer as JSON. kserve is imported
inside the functions only, so that pytest's process can take ``to_json``/``from_json`` from here.

    echo '{"calls": {"live": {"op": "live", "url": "http://127.0.0.1:8501"}}}' | python -m tests.v2_kserve_calls
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys

import numpy as np


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


if __name__ == "__main__":
    print(json.dumps(asyncio.run(kserve_calls(json.load(sys.stdin)["calls"]))))
