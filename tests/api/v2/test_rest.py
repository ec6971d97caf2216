"""The Open Inference Protocol's REST routes against real appliances: every route, JSON and binary inference
(requests built by hand and by tritonclient.http), the errors, the metrics labels and the control token.

Expected outputs come from the same server's TF Serving API (``/v1/models/...:predict``), never from the
code under test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct

import ml_dtypes
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from appliance.api.app import create_app
from appliance.api.metrics import Metrics
from appliance.api.openapi import openapi_document
from appliance.api.security import AccessPolicy
from appliance.api.v2.dataplane import InferResult
from appliance.api.v2.rest import MODEL_ROUTES, REPOSITORY_PATH, V2RestAPI, infer_response
from appliance.server import Server
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime import DeferredRuntime

from ...conftest import MODELS, ApplianceProcess

TIMEOUT = 30
DIGITS = json.loads((MODELS / "digits" / "samples" / "serving_default.json").read_text())["instances"]
ROWS = np.array(DIGITS * 3, dtype=np.float32) + np.arange(3, dtype=np.float32).repeat(64).reshape(3, 64)
HEADER = "Inference-Header-Content-Length"


def tf_serving_predict(url: str, model: str, inputs, signature: str = "", version: int | None = None) -> dict:
    """The outputs TF Serving's REST API gives for ``inputs`` (columnar format), as arrays by name."""
    where = f"/versions/{version}" if version else ""
    body = {"inputs": inputs, **({"signature_name": signature} if signature else {})}
    response = requests.post(f"{url}/v1/models/{model}{where}:predict", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    return {name: np.array(value) for name, value in outputs.items()} if isinstance(outputs, dict) else outputs


def infer(url: str, path: str, document: dict, **kwargs) -> requests.Response:
    return requests.post(f"{url}/v2/models/{path}/infer", json=document, timeout=TIMEOUT, **kwargs)


def pixels(data, shape=(3, 64), datatype="FP32", **extra) -> dict:
    return {"name": "pixels", "shape": list(shape), "datatype": datatype, "data": data, **extra}


def binary_input(name: str, shape, datatype: str, size: int) -> dict:
    return {"name": name, "shape": list(shape), "datatype": datatype, "parameters": {"binary_data_size": size}}


def outputs_of(document: dict) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in document["outputs"]}


def split_binary(response: requests.Response) -> tuple[dict, bytes]:
    assert response.headers["Content-Type"] == "application/octet-stream"
    length = int(response.headers[HEADER])
    return json.loads(response.content[:length]), response.content[length:]


# --- health, metadata, readiness ----------------------------------------------------------------------------------


def test_health_and_server_metadata(bundled_server):
    url = bundled_server.url
    assert requests.get(url + "/v2/health/live", timeout=TIMEOUT).json() == {"live": True}
    ready = requests.get(url + "/v2/health/ready", timeout=TIMEOUT)
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    metadata = requests.get(url + "/v2", timeout=TIMEOUT).json()
    assert metadata["name"] == "appliance" and metadata["version"]
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(metadata["extensions"])
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["extensions"] == metadata["extensions"]


def test_model_metadata_matches_the_tf_serving_signature(bundled_server):
    url = bundled_server.url
    metadata = requests.get(url + "/v2/models/digits", timeout=TIMEOUT).json()
    tf_metadata = requests.get(url + "/v1/models/digits/metadata", timeout=TIMEOUT).json()
    signature = tf_metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    statuses = requests.get(url + "/v1/models/digits", timeout=TIMEOUT).json()["model_version_status"]
    assert metadata["name"] == "digits" and metadata["platform"] == "tensorflow_savedmodel"
    assert metadata["versions"] == [s["version"] for s in statuses if s["state"] == "AVAILABLE"]
    tf_types = {"DT_FLOAT": "FP32", "DT_INT64": "INT64"}
    for side in ("inputs", "outputs"):
        expected = [
            {
                "name": name,
                "datatype": tf_types[info["dtype"]],
                "shape": [int(d["size"]) for d in info["tensor_shape"]["dim"]],
            }
            for name, info in signature[side].items()
        ]
        assert sorted(metadata[side], key=lambda t: t["name"]) == sorted(expected, key=lambda t: t["name"])
    one_version = requests.get(url + "/v2/models/digits/versions/1", timeout=TIMEOUT)
    assert one_version.status_code == 200 and one_version.json()["inputs"] == metadata["inputs"]
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    assert client.get_model_metadata("digits") == metadata


def test_model_configuration_is_the_one_the_grpc_api_gives(bundled_server):
    config = requests.get(bundled_server.url + "/v2/models/digits/config", timeout=TIMEOUT).json()
    grpc_config = triton_grpc.InferenceServerClient(bundled_server.grpc_address).get_model_config(
        "digits", as_json=True
    )["config"]
    for side in ("input", "output"):  # proto3 JSON writes int64 dims as strings, and leaves out empty ones
        for tensor in grpc_config[side]:
            tensor["dims"] = [int(d) for d in tensor.get("dims", [])]
    assert config == {"backend": "", "max_batch_size": 0, **grpc_config}
    metadata = requests.get(bundled_server.url + "/v2/models/digits", timeout=TIMEOUT).json()
    batch = 1 if config["max_batch_size"] else 0
    assert [t["dims"] for t in config["input"]] == [t["shape"][batch:] for t in metadata["inputs"]]
    assert requests.get(bundled_server.url + "/v2/models/nope/config", timeout=TIMEOUT).status_code == 404


def test_model_readiness(bundled_server):
    url = bundled_server.url
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    ready = requests.get(url + "/v2/models/digits/ready", timeout=TIMEOUT)
    assert ready.status_code == 200 and ready.json() == {"name": "digits", "ready": True}
    assert requests.get(url + "/v2/models/dig%69ts/ready", timeout=TIMEOUT).status_code == 200, "percent-decoded"
    not_loaded = requests.get(url + "/v2/models/digits/versions/9/ready", timeout=TIMEOUT)
    assert not_loaded.status_code == 400 and "version 9" in not_loaded.json()["error"]
    assert not client.is_model_ready("digits", "9")
    unknown = requests.get(url + "/v2/models/nope/ready", timeout=TIMEOUT)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    assert not client.is_model_ready("nope")


# --- inference ----------------------------------------------------------------------------------------------------


def test_json_inference_flat_and_nested_match_tf_serving(bundled_server):
    url = bundled_server.url
    expected = tf_serving_predict(url, "digits", ROWS.tolist())
    for data in (ROWS.tolist(), ROWS.reshape(-1).tolist()):
        response = infer(url, "digits", {"id": "req-1", "inputs": [pixels(data)]})
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        document = response.json()
        assert document["model_name"] == "digits" and document["id"] == "req-1"
        assert [(o["name"], o["datatype"]) for o in document["outputs"]] == [
            ("class", "INT64"),
            ("probabilities", "FP32"),
        ]
        got = outputs_of(document)
        np.testing.assert_array_equal(got["class"], expected["class"])
        np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=1e-6)


def test_nan_and_infinities_as_bare_tokens_both_ways(bundled_server):
    """Python's json.dumps writes NaN as a bare token; outputs that are NaN come back so, as TF Serving writes them."""
    url = bundled_server.url
    rows = ROWS.copy()
    rows[0, :] = np.nan
    rows[1, 0] = np.inf
    expected = requests.post(
        url + "/v1/models/digits:predict", data=json.dumps({"inputs": rows.tolist()}), timeout=TIMEOUT
    ).json()["outputs"]["probabilities"]
    body = json.dumps({"inputs": [pixels(rows.tolist())], "outputs": [{"name": "probabilities"}]})
    response = requests.post(url + "/v2/models/digits/infer", data=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert b"NaN" in response.content and b"null" not in response.content
    np.testing.assert_allclose(outputs_of(response.json())["probabilities"], np.array(expected), rtol=1e-6)


def test_no_version_means_the_chosen_version_and_a_version_picks_one(bundled_server):
    url = bundled_server.url
    chosen = requests.get(url + "/v1/appliance/models/digits/chosen", timeout=TIMEOUT).json()["chosen_version"]
    assert infer(url, "digits", {"inputs": [pixels(ROWS.tolist())]}).json()["model_version"] == str(chosen)
    expected = tf_serving_predict(url, "digits", ROWS.tolist(), version=1)
    one = infer(url, "digits/versions/1", {"inputs": [pixels(ROWS.tolist())]}).json()
    assert one["model_version"] == "1"
    np.testing.assert_allclose(outputs_of(one)["probabilities"], expected["probabilities"], rtol=1e-6)


def test_requested_outputs_by_name(bundled_server):
    url = bundled_server.url
    document = infer(url, "digits", {"inputs": [pixels(ROWS.tolist())], "outputs": [{"name": "probabilities"}]}).json()
    assert [o["name"] for o in document["outputs"]] == ["probabilities"]
    unknown = infer(url, "digits", {"inputs": [pixels(ROWS.tolist())], "outputs": [{"name": "klass"}]})
    assert unknown.status_code == 400
    assert "klass" in unknown.json()["error"] and "class,probabilities" in unknown.json()["error"]


def binary_body(document: dict, *chunks: bytes) -> tuple[bytes, dict]:
    header = json.dumps(document).encode()
    return header + b"".join(chunks), {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}


def test_binary_inputs_and_outputs_by_hand(bundled_server):
    url = bundled_server.url
    expected = tf_serving_predict(url, "digits", ROWS.tolist())
    raw = ROWS.astype("<f4").tobytes()
    body, headers = binary_body(
        {
            "inputs": [binary_input("pixels", ROWS.shape, "FP32", len(raw))],
            "outputs": [{"name": "class", "parameters": {"binary_data": True}}, {"name": "probabilities"}],
        },
        raw,
    )
    response = requests.post(url + "/v2/models/digits/infer", data=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    document, tail = split_binary(response)
    classes, probabilities = document["outputs"]
    assert "data" not in classes and classes["parameters"] == {"binary_data_size": len(tail)}
    np.testing.assert_array_equal(np.frombuffer(tail, "<i8"), expected["class"])
    np.testing.assert_allclose(np.array(probabilities["data"]).reshape(3, 10), expected["probabilities"], rtol=1e-6)
    # binary_data_output: every output as binary data, in the order they come in the JSON
    all_binary = infer(url, "digits", {"inputs": [pixels(ROWS.tolist())], "parameters": {"binary_data_output": True}})
    document, tail = split_binary(all_binary)
    sizes = [o["parameters"]["binary_data_size"] for o in document["outputs"]]
    assert sizes == [3 * 8, 3 * 10 * 4] and len(tail) == sum(sizes)
    np.testing.assert_allclose(np.frombuffer(tail[24:], "<f4").reshape(3, 10), expected["probabilities"], rtol=1e-6)


def test_tritonclient_binary_and_json_agree_with_tf_serving(bundled_server):
    url = bundled_server.url
    expected = tf_serving_predict(url, "digits", ROWS.tolist())
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    for binary in (True, False):
        given = triton_http.InferInput("pixels", list(ROWS.shape), "FP32")
        given.set_data_from_numpy(ROWS, binary_data=binary)
        asked = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "class")]
        result = client.infer("digits", [given], outputs=asked, request_id="t")
        np.testing.assert_array_equal(result.as_numpy("class"), expected["class"])
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-6)
        assert result.get_response()["id"] == "t"
    # the body tritonclient builds is the one written by hand above: the same answer
    given = triton_http.InferInput("pixels", list(ROWS.shape), "FP32")
    given.set_data_from_numpy(ROWS, binary_data=True)
    body, json_size = triton_http.InferenceServerClient.generate_request_body([given])
    response = requests.post(
        url + "/v2/models/digits/infer", data=body, headers={HEADER: str(json_size)}, timeout=TIMEOUT
    )
    document, tail = split_binary(response)  # no outputs named: tritonclient asks for binary_data_output
    assert document["outputs"][0]["parameters"]["binary_data_size"] == 24
    np.testing.assert_array_equal(np.frombuffer(tail[:24], "<i8"), expected["class"])


def test_an_error_through_tritonclient(bundled_server):
    client = triton_http.InferenceServerClient(bundled_server.url.removeprefix("http://"))
    given = triton_http.InferInput("pixels", [1, 64], "FP64")
    given.set_data_from_numpy(np.zeros((1, 64)), binary_data=True)
    with pytest.raises(InferenceServerException, match="expects FP32"):
        client.infer("digits", [given])


def test_bytes_input_through_a_signature_parameter(bundled_server):
    """The digits model's "image" signature takes PNG bytes: sent as binary data (they are not UTF-8)."""
    url = bundled_server.url
    png = (MODELS / "digits" / "samples" / "3.png").read_bytes()
    expected = tf_serving_predict(url, "digits", {"image_bytes": [{"b64": base64.b64encode(png).decode()}]}, "image")
    raw = struct.pack("<I", len(png)) + png
    body, headers = binary_body(
        {
            "inputs": [
                {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
            ],
            "parameters": {"signature_name": "image"},
        },
        raw,
    )
    response = requests.post(url + "/v2/models/digits/infer", data=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    expected = expected if isinstance(expected, dict) else {"probabilities": np.array(expected)}
    for name, value in outputs_of(response.json()).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-6)


def test_bytes_tensors_as_json_strings_and_as_binary(tfs_direct_server):
    """multi_io takes a float matrix, ints and strings, and gives back ints, bools and strings."""
    url = tfs_direct_server.url
    a, b, tags = [[1.5, 2.0], [-4.0, 0.25]], [3, -7], ["héllo", "x"]
    expected = tf_serving_predict(url, "multi_io", {"a": a, "b": b, "tag": tags})
    inputs = [
        {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": a},
        {"name": "b", "shape": [2], "datatype": "INT32", "data": b},
        {"name": "tag", "shape": [2], "datatype": "BYTES", "data": tags},
    ]
    response = infer(url, "multi_io", {"inputs": inputs})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert {n: o["datatype"] for n, o in outputs.items()} == {
        "total": "FP32",
        "b_plus_one": "INT64",
        "is_pos": "BOOL",
        "tag_bytes": "BYTES",
        "tag_text": "BYTES",
    }
    assert outputs["tag_text"]["data"] == list(expected["tag_text"])
    assert outputs["is_pos"]["data"] == list(expected["is_pos"])
    assert outputs["b_plus_one"]["data"] == list(expected["b_plus_one"])
    # the strings as binary data, in and out: each a 4-byte length and its UTF-8 bytes
    raw = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in tags)
    inputs[2] = {"name": "tag", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    body, headers = binary_body(
        {"inputs": inputs, "outputs": [{"name": "tag_text", "parameters": {"binary_data": True}}]}, raw
    )
    document, tail = split_binary(
        requests.post(url + "/v2/models/multi_io/infer", data=body, headers=headers, timeout=TIMEOUT)
    )
    assert document["outputs"][0]["name"] == "tag_text"
    assert tail == b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in expected["tag_text"])


def test_non_utf8_bytes_outputs_come_back_as_binary_data(tfs_direct_server):
    url = tfs_direct_server.url
    tag = b"\xff\xfe raw"
    raw = struct.pack("<I", len(tag)) + tag
    inputs = [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
        {"name": "b", "shape": [1], "datatype": "INT32", "data": [1]},
        {"name": "tag", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}},
    ]
    body, headers = binary_body({"inputs": inputs, "outputs": [{"name": "tag_bytes"}, {"name": "total"}]}, raw)
    response = requests.post(url + "/v2/models/multi_io/infer", data=body, headers=headers, timeout=TIMEOUT)
    document, tail = split_binary(response)
    tag_bytes, total = document["outputs"]
    assert "data" not in tag_bytes and tail == raw, "asked for as JSON, sent as binary data: nothing is lost"
    assert total["data"] == [4.0]


def test_every_datatype_written_as_json_and_as_binary_reads_back_through_tritonclient():
    """The response writer alone, read by tritonclient.http's own decoder: JSON, binary, and BYTES that are not
    UTF-8 (sent as binary data even when asked for as JSON)."""
    outputs = {
        "half": np.array([[1.5, np.nan], [-np.inf, 0.25]], np.float16),
        "brain": np.array([np.inf, 2.0], ml_dtypes.bfloat16),
        "flags": np.array([True, False]),
        "small": np.array([[0, 255]], np.uint8),
        "wide": np.array([2**63 - 1, -(2**63)], np.int64),
        "text": np.array([b"h\xc3\xa9", b""], dtype=object),
        "raw": np.array([b"\xff\x00"], dtype=object),
    }
    for binary in (False, True):
        response = infer_response(InferResult("m", 3, outputs, "i"), {"": binary})
        result = triton_http.InferResult.from_response_body(
            response.body, header_length=response.headers.get(HEADER) and int(response.headers[HEADER])
        )
        assert (result.get_response()["model_version"], result.get_response()["id"]) == ("3", "i")
        for name, array in outputs.items():
            got = result.as_numpy(name)
            if array.dtype == object:  # JSON strings come back as str, binary data as bytes
                assert [v.encode() if isinstance(v, str) else v for v in got.tolist()] == array.tolist(), name
            else:
                np.testing.assert_array_equal(got.astype(np.float64), array.astype(np.float64), err_msg=name)
                assert got.shape == array.shape
        raw = next(o for o in result.get_response()["outputs"] if o["name"] == "raw")
        assert "data" not in raw and raw["parameters"]["binary_data_size"] == 6


# --- errors -------------------------------------------------------------------------------------------------------

GOOD = [0] * 64
ERRORS = [
    ("not JSON", b"{inputs", {}, 400, "not valid JSON"),
    ("not an object", b"[1]", {}, 400, "JSON object"),
    ("no inputs", b"{}", {}, 400, '"inputs"'),
    ("input without a name", {"inputs": [{"shape": [1, 64]}]}, {}, 400, '"name"'),
    ("shape not integers", {"inputs": [pixels(GOOD, shape=["1", 64])]}, {}, 400, "shape"),
    ("negative dimension", {"inputs": [pixels(GOOD, shape=[-1, 64])]}, {}, 400, "negative"),
    ("no data", {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32"}]}, {}, 400, 'no "data"'),
    ("unknown datatype", {"inputs": [pixels(GOOD, shape=[1, 64], datatype="FP8")]}, {}, 400, "FP8"),
    ("datatype mismatch", {"inputs": [pixels(GOOD, shape=[1, 64], datatype="INT32")]}, {}, 400, "expects FP32"),
    ("strings for numbers", {"inputs": [pixels(["1"] * 64, shape=[1, 64])]}, {}, 400, "must be numbers"),
    ("ragged data", {"inputs": [pixels([[1, 2], [3]], shape=[1, 3])]}, {}, 400, "ragged"),
    ("count mismatch", {"inputs": [pixels(GOOD, shape=[2, 64])]}, {}, 400, "holds 128"),
    ("wrong shape", {"inputs": [pixels(GOOD, shape=[64, 1])]}, {}, 400, "pixels"),
    ("int out of range", {"inputs": [pixels([300], shape=[1], datatype="UINT8")]}, {}, 400, "out of range"),
    ("duplicate input", {"inputs": [pixels(GOOD, shape=[1, 64])] * 2}, {}, 400, "twice"),
    ("unknown input", {"inputs": [{**pixels(GOOD, shape=[1, 64]), "name": "pix"}]}, {}, 400, "pixels"),
    ("id not a string", {"id": 7, "inputs": [pixels(GOOD, shape=[1, 64])]}, {}, 400, '"id"'),
    (
        "classification",
        {"inputs": [pixels(GOOD, shape=[1, 64])], "outputs": [{"name": "class", "parameters": {"classification": 2}}]},
        {},
        400,
        "classification",
    ),
    (
        "unknown signature",
        {"inputs": [pixels(GOOD, shape=[1, 64])], "parameters": {"signature_name": "nope"}},
        {},
        404,
        "nope",
    ),
    (
        "binary_data_output not a bool",
        {"inputs": [pixels(GOOD, shape=[1, 64])], "parameters": {"binary_data_output": "yes"}},
        {},
        400,
        "binary_data_output",
    ),
    ("header length not a number", {"inputs": [pixels(GOOD, shape=[1, 64])]}, {HEADER: "ten"}, 400, HEADER),
    ("header length past the body", {"inputs": [pixels(GOOD, shape=[1, 64])]}, {HEADER: "99999"}, 400, HEADER),
]


def _send(url: str, path: str, body, headers: dict) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{url}/v2/models/{path}/infer", data=data, headers=headers, timeout=TIMEOUT)


@pytest.mark.parametrize(("case", "body", "headers", "status", "words"), ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_requests_get_a_precise_status_and_message(bundled_server, case, body, headers, status, words):
    response = _send(bundled_server.url, "digits", body, headers)
    assert response.status_code == status and response.headers["Content-Type"] == "application/json"
    assert words in response.json()["error"], response.json()
    assert "Traceback" not in response.text
    assert infer(bundled_server.url, "digits", {"inputs": [pixels(ROWS.tolist())]}).status_code == 200


def test_binary_sizes_that_do_not_add_up(bundled_server):
    url = bundled_server.url
    raw = ROWS[:1].tobytes()
    for size, tail, words in (
        (256, raw + b"x", "add up to 256"),
        (512, raw, "takes 512 bytes"),
        (100, raw[:100], "take 256"),
    ):
        body, headers = binary_body({"inputs": [binary_input("pixels", [1, 64], "FP32", size)]}, tail)
        response = requests.post(url + "/v2/models/digits/infer", data=body, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 400 and words in response.json()["error"], (size, response.text)
    both, headers = binary_body({"inputs": [pixels(GOOD, shape=[1, 64], parameters={"binary_data_size": 256})]}, raw)
    response = requests.post(url + "/v2/models/digits/infer", data=both, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 400 and "both" in response.json()["error"]


def test_unknown_models_versions_paths_and_methods(bundled_server):
    url = bundled_server.url
    body = {"inputs": [pixels(GOOD, shape=[1, 64])]}
    for path, status, words in (
        ("nope", 404, "nope"),
        ("digits/versions/9", 404, "digits, 9"),
        ("digits/versions/two", 400, "version number"),
        ("digits/versions/99999999999999999999", 400, "version number"),
    ):
        response = infer(url, path, body)
        assert response.status_code == status and words in response.json()["error"], response.text
    assert requests.get(url + "/v2/models/nope", timeout=TIMEOUT).status_code == 404
    wrong_method = requests.get(url + "/v2/models/digits/infer", timeout=TIMEOUT)
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert requests.post(url + "/v2/health/live", timeout=TIMEOUT).status_code == 405
    unknown = requests.get(url + "/v2/nothing/here", timeout=TIMEOUT)
    assert unknown.status_code == 404 and "/v2/nothing/here" in unknown.json()["error"]


def test_v2_requests_are_counted_with_their_api_and_version(bundled_server):
    url = bundled_server.url
    metrics_url = url + "/monitoring/prometheus/metrics"

    def count(api: str, model: str, version: str, code: str) -> float:
        wanted = {"api": api, "model": model, "version": version, "code": code}
        text = requests.get(metrics_url, timeout=TIMEOUT).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "appliance_requests_total" and wanted.items() <= sample.labels.items()
        )

    before = count("v2_infer", "digits", "1", "200"), count("v2_infer", "digits", "1", "400")
    infer(url, "digits/versions/1", {"inputs": [pixels(ROWS.tolist())]})
    infer(url, "digits/versions/1", {"inputs": [pixels(GOOD, shape=[1, 64], datatype="INT32")]})
    assert (count("v2_infer", "digits", "1", "200"), count("v2_infer", "digits", "1", "400")) == (
        before[0] + 1,
        before[1] + 1,
    )
    ready_before = count("v2_health", "", "", "200")
    requests.get(url + "/v2/health/ready", timeout=TIMEOUT)
    assert count("v2_health", "", "", "200") == ready_before + 1


# --- an appliance of this module's own: the body limit and the control token ---------------------------------------


def empty_manager() -> ModelManager:
    """A manager of no models, never started: nothing is loaded, TensorFlow is not imported."""
    return ModelManager(Repository([]), DeferredRuntime(lambda: None), poll_seconds=0)


@contextlib.contextmanager
def serving(**access):
    """An appliance with no models (nothing is loaded), a 1 KiB body limit and ``AccessPolicy(**access)``."""
    server = Server(create_app(empty_manager(), max_request_bytes=1024, access=AccessPolicy(**access)), "127.0.0.1", 0)
    thread = server.start()
    try:
        yield server.url
    finally:
        server.stop()
        thread.join(TIMEOUT)


def test_a_body_over_the_limit_is_refused_before_it_is_read():
    with serving() as url:
        response = infer(url, "digits", {"inputs": [pixels([0.5] * 640, shape=[10, 64])]})
        assert response.status_code == 413 and "limit" in response.json()["error"]
        assert requests.get(url + "/v2/health/live", timeout=TIMEOUT).status_code == 200


def test_loading_and_unloading_need_the_control_token_when_one_is_set():
    with serving(control_token="s3cret") as url:
        for action in ("load", "unload"):
            refused = requests.post(f"{url}/v2/repository/models/digits/{action}", timeout=TIMEOUT)
            assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
            allowed = requests.post(
                f"{url}/v2/repository/models/digits/{action}",
                headers={"Authorization": "Bearer s3cret"},
                timeout=TIMEOUT,
            )
            assert allowed.status_code == 404, "let through to the repository, which has no digits here"
        assert requests.post(url + "/v2/repository/index", timeout=TIMEOUT).status_code != 401, "reading needs none"


def test_every_v2_route_is_documented():
    """Each path and method the /v2 handler answers has an operation in /openapi.json."""
    paths = openapi_document()["paths"]
    api = V2RestAPI(empty_manager(), Metrics(), lambda environ: b"", None)
    answered = [(path, method) for path, (method, _, _) in api._fixed.items()]
    for form in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        answered += [(form + (f"/{action}" if action else ""), method) for action, (method, _) in MODEL_ROUTES.items()]
    answered += [(f"/v2/repository/models/{{name}}/{action}", "POST") for action in ("load", "unload")]
    assert REPOSITORY_PATH.pattern.endswith("(load|unload)")
    assert [(p, m) for p, m in answered if m.lower() not in paths.get(p, {})] == []


# --- the repository and statistics extensions, through their routes (an appliance of this module's own) ---------


@pytest.fixture(scope="module")
def own_server():
    """The bundled models in an appliance these tests may unload models from."""
    server = ApplianceProcess()
    yield server
    server.stop()


def test_unloading_and_loading_a_model_through_the_repository_routes(own_server):
    url = own_server.url
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    index = requests.post(url + "/v2/repository/index", timeout=TIMEOUT).json()
    statuses = requests.get(url + "/v1/models/iris", timeout=TIMEOUT).json()["model_version_status"]
    assert sorted(e["version"] for e in index if e["name"] == "iris") == sorted(s["version"] for s in statuses)
    assert client.get_model_repository_index() == index
    body = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    assert infer(url, "iris", body).status_code == 200
    unloaded = requests.post(url + "/v2/repository/models/iris/unload", timeout=TIMEOUT)
    assert unloaded.status_code == 200, unloaded.text
    assert infer(url, "iris", body).status_code == 404
    assert not client.is_model_ready("iris")
    ready_only = requests.post(url + "/v2/repository/index", json={"ready": True}, timeout=TIMEOUT).json()
    assert "iris" not in {e["name"] for e in ready_only} and "digits" in {e["name"] for e in ready_only}
    loaded = requests.post(url + "/v2/repository/models/iris/load", json={}, timeout=TIMEOUT)
    assert loaded.status_code == 200, loaded.text
    assert infer(url, "iris", body).status_code == 200 and client.is_model_ready("iris")
    client.unload_model("iris")
    client.load_model("iris")
    assert client.is_model_ready("iris")
    unknown = requests.post(url + "/v2/repository/models/nope/load", timeout=TIMEOUT)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    bad = requests.post(url + "/v2/repository/models/iris/load", data=b"[1]", timeout=TIMEOUT)
    assert bad.status_code == 400 and "JSON object" in bad.json()["error"]


def test_statistics_count_the_v2_inferences_of_each_version(own_server):
    url = own_server.url
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))

    def successes(version: str) -> int:
        document = requests.get(f"{url}/v2/models/digits/versions/{version}/stats", timeout=TIMEOUT).json()
        (stats,) = document["model_stats"]
        assert (stats["name"], stats["version"]) == ("digits", version)
        return stats["inference_stats"]["success"]["count"]

    before = successes("1")
    for _ in range(3):
        assert infer(url, "digits/versions/1", {"inputs": [pixels(ROWS.tolist())]}).status_code == 200
    assert successes("1") == before + 3
    every = requests.get(url + "/v2/models/stats", timeout=TIMEOUT).json()["model_stats"]
    assert {(s["name"], s["version"]) for s in every} >= {("digits", "1"), ("digits", "2"), ("iris", "2")}
    assert client.get_inference_statistics("digits", "1")["model_stats"][0]["inference_stats"]["success"]["count"] == (
        before + 3
    )
    assert requests.get(url + "/v2/models/nope/stats", timeout=TIMEOUT).status_code == 404
    assert requests.get(url + "/v2/models/digits/versions/x/stats", timeout=TIMEOUT).status_code == 400
