"""TF Serving REST conformance, against a real appliance serving TF Serving's own test models.

The cases and expected answers come from TF Serving's tests
(``tensorflow_model_server_test.py``, ``http_rest_api_handler_test.cc``,
``json_tensor_test.cc``) and its golden metadata files, and from the models'
documented arithmetic (half_plus_two: y = 0.5x + 2, y2 = 0.5x + 3, y3 = 0.5x2 + 3).
"""

from __future__ import annotations

import base64
import json

import pytest
import requests


def post(server, path: str, body) -> requests.Response:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(server.url + path, data=data, timeout=30)


def error_of(response: requests.Response) -> str:
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert set(document) == {"error"}, document
    return document["error"]


def sorted_object(value):
    """tensorflow_model_server_test_base.SortedObject: order-insensitive comparison of metadata."""
    if isinstance(value, dict):
        return sorted((k, sorted_object(v)) for k, v in value.items())
    if isinstance(value, list):
        return sorted(sorted_object(v) for v in value)
    return value


# -- tensorflow_model_server_test.py (model "default" = saved_model_half_plus_two_cpu) ----------------


def test_predict_rest(tfs_server):
    response = post(tfs_server, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]})
    assert response.status_code == 200
    assert response.json() == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(tfs_server):
    response = post(tfs_server, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]})
    assert response.json() == {"outputs": [3.0, 3.5, 4.0]}


def test_classify_rest(tfs_server):
    response = post(
        tfs_server, "/v1/models/default:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    )
    assert response.status_code == 200
    assert response.json() == {"results": [[["", 3.0]]]}


def test_regress_rest(tfs_server):
    response = post(
        tfs_server, "/v1/models/default:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    )
    assert response.json() == {"results": [3.0]}


def test_get_status_rest(tfs_server):
    response = requests.get(tfs_server.url + "/v1/models/default", timeout=30)
    assert response.status_code == 200
    assert response.json() == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def test_get_model_metadata_rest_matches_golden(tfs_server, tfs_testdata):
    response = requests.get(tfs_server.url + "/v1/models/default/metadata", timeout=30)
    assert response.status_code == 200
    golden = json.loads((tfs_testdata / "golden" / "half_plus_two_model_metadata.json").read_text())
    assert sorted_object(response.json()) == sorted_object(golden)


# -- http_rest_api_handler_test.cc (saved_model_half_plus_two_2_versions, label "stable" -> 123) -------


@pytest.mark.parametrize(
    "method, path, message",
    [
        ("GET", "/v1/foo", "Malformed request"),
        ("POST", "/v1/foo", "Malformed request"),
        ("GET", "/v1/models", "Missing model name"),
        ("GET", "/v1/models/debug/model_name", "Malformed request"),
        ("POST", "/v1/models", "Malformed request"),
        ("GET", "/v1/models/foo:predict", "Malformed request"),
        ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
        ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
        ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "Failed to convert version"),
        ("POST", "/v1/models/foo/metadata", "Malformed request"),
        ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
        ("PUT", "/v1/models/default:predict", "Malformed request"),
        ("DELETE", "/v1/models/default", "Malformed request"),
    ],
)
def test_unsupported_api_calls(tfs_server, method, path, message):
    response = requests.request(method, tfs_server.url + path, data="", timeout=30)
    assert response.status_code == 400
    assert message in error_of(response)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/foo:predict",
        "/v1/models/foo/versions/50:predict",
        "/v1/models/two_versions99:predict",
        "/v1/models/two_versions/versions/99:predict",
    ],
)
def test_predict_model_name_version_errors(tfs_server, path):
    response = post(tfs_server, path, {"instances": [1]})
    assert response.status_code == 404
    assert error_of(response)


def test_predict_request_errors(tfs_server):
    path = "/v1/models/two_versions:predict"
    response = post(tfs_server, path, "")
    assert response.status_code == 400
    assert "JSON Parse error: The document is empty" in error_of(response)

    response = post(tfs_server, path, "instances = [1, 2]")
    assert response.status_code == 400
    assert "JSON Parse error: Invalid value" in error_of(response)

    response = post(tfs_server, path, '{"instances": [1.0, 1e400]}')
    assert response.status_code == 400
    assert error_of(response) == "JSON Parse error: Number too big to be stored in double. at offset: 20"

    response = post(tfs_server, path, {"instances": ["x", "y"]})
    assert response.status_code == 400
    assert "not of expected type: float" in error_of(response)

    response = post(tfs_server, "/v1/models/two_versions/labels/nonexistent:predict", {"instances": ["x", "y"]})
    assert response.status_code == 400
    assert "Unrecognized servable version label" in error_of(response)

    response = post(tfs_server, path, {"signature_name": 100})
    assert response.status_code == 400
    assert "'signature_name' key must be a string value." in error_of(response)


@pytest.mark.parametrize("route", ["", "/versions/123", "/labels/stable"])
def test_predict_row_and_columnar_by_version_and_label(tfs_server, route):
    path = f"/v1/models/two_versions{route}:predict"
    assert post(tfs_server, path, {"instances": [[1.0, 2.0], [3.0, 4.0]]}).json() == {
        "predictions": [[2.5, 3.0], [3.5, 4.0]]
    }
    assert post(tfs_server, path, {"instances": [1.0, 2.0]}).json() == {"predictions": [2.5, 3.0]}
    body = {"signature_name": "serving_default", "instances": [3.0, 4.0]}
    assert post(tfs_server, path, body).json() == {"predictions": [3.5, 4.0]}
    body = {"signature_name": "serving_default", "inputs": [3.0, 4.0]}
    assert post(tfs_server, path, body).json() == {"outputs": [3.5, 4.0]}


@pytest.mark.parametrize("route", ["", "/versions/123", "/labels/stable", "/labels/canary"])
def test_regress_and_classify_by_version_and_label(tfs_server, route):
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    assert post(tfs_server, f"/v1/models/two_versions{route}:regress", body).json() == {"results": [42]}
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}
    assert post(tfs_server, f"/v1/models/two_versions{route}:classify", body).json() == {"results": [[["", 12]]]}
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]}
    assert post(tfs_server, f"/v1/models/two_versions{route}:classify", body).json() == {"results": [[["", 7]]]}


def test_get_status_of_one_version(tfs_server):
    response = requests.get(f"{tfs_server.url}/v1/models/two_versions/versions/123", timeout=30)
    assert response.json() == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


@pytest.mark.parametrize("label", ["stable", "canary", "nonexistent"])
def test_get_status_by_label_lists_every_version_as_tf_serving_does(tfs_server, label):
    every_version = requests.get(f"{tfs_server.url}/v1/models/two_versions", timeout=30)
    response = requests.get(f"{tfs_server.url}/v1/models/two_versions/labels/{label}", timeout=30)
    assert response.status_code == 200
    assert response.json() == every_version.json()
    assert len(response.json()["model_version_status"]) == 2


def test_get_status_lists_every_version_newest_first(tfs_server):
    statuses = requests.get(f"{tfs_server.url}/v1/models/two_versions", timeout=30).json()["model_version_status"]
    assert [s["version"] for s in statuses] == ["124", "123"]
    assert {s["state"] for s in statuses} == {"AVAILABLE"}


def test_get_model_metadata_of_version_matches_golden(tfs_server, tfs_testdata):
    golden = json.loads((tfs_testdata / "golden" / "saved_model_half_plus_two_2_versions_metadata.json").read_text())
    golden["model_spec"]["name"] = "two_versions"
    response = requests.get(f"{tfs_server.url}/v1/models/two_versions/versions/123/metadata", timeout=30)
    assert sorted_object(response.json()) == sorted_object(golden)


def test_metadata_of_unversioned_request_names_the_newest_version(tfs_server):
    document = requests.get(f"{tfs_server.url}/v1/models/two_versions/metadata", timeout=30).json()
    assert document["model_spec"] == {"name": "two_versions", "signature_name": "", "version": "124"}


# -- status and metadata errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/v1/models/nope", 404, "Could not find any versions of model nope"),
        ("/v1/models/default/versions/7", 404, "Could not find version 7 of model default"),
        ("/v1/models/nope/metadata", 404, "Servable not found for request: Latest(nope)"),
        ("/v1/models/default/versions/7/metadata", 404, "Servable not found for request: Specific(default, 7)"),
        ("/v1/models/nope/labels/nope", 404, "Could not find any versions of model nope"),
        ("/v1/models/default/labels/nope/metadata", 400, "Unrecognized servable version label: nope"),
        ("/v1/models/nope/labels/nope/metadata", 400, "Unrecognized servable version label: nope"),
    ],
)
def test_status_and_metadata_errors(tfs_server, path, status, message):
    response = requests.get(tfs_server.url + path, timeout=30)
    assert response.status_code == status
    assert message in error_of(response)


def test_duplicate_keys_keep_the_first_value_as_rapidjson_does(tfs_server):
    body = '{"instances": [1.0, 2.0], "signature_name": "serving_default", "instances": [3.0], "signature_name": "x"}'
    first = {"instances": [1.0, 2.0], "signature_name": "serving_default"}
    expected = post(tfs_server, "/v1/models/default:predict", first).json()
    assert len(expected["predictions"]) == 2
    assert post(tfs_server, "/v1/models/default:predict", body).json() == expected
    body = '{"inputs": {"x": [1.0, 2.0], "x": "not a tensor"}, "inputs": 7}'
    expected = post(tfs_server, "/v1/models/default:predict", {"inputs": {"x": [1.0, 2.0]}}).json()
    assert len(expected["outputs"]) == 2
    assert post(tfs_server, "/v1/models/default:predict", body).json() == expected


def test_body_is_parsed_before_the_model_is_looked_up(tfs_server):
    assert post(tfs_server, "/v1/models/nope:predict", "{not json").status_code == 400
    assert post(tfs_server, "/v1/models/nope:predict", {"instances": [1.0]}).status_code == 404
    assert post(tfs_server, "/v1/models/nope:classify", {"examples": []}).status_code == 400


def test_url_matching_is_case_insensitive_but_verbs_are_exact(tfs_server):
    assert post(tfs_server, "/V1/Models/default:predict", {"instances": [2.0]}).json() == {"predictions": [3.0]}
    response = post(tfs_server, "/v1/models/default:PREDICT", {"instances": [2.0]})
    assert response.status_code == 400 and "Malformed request" in error_of(response)


def test_model_name_is_percent_decoded(tfs_server):
    response = post(tfs_server, "/v1/models/d%65fault:predict", {"instances": [2.0]})
    assert response.json() == {"predictions": [3.0]}


# -- TF1-only model from TF Serving's REST docs, TF2 model, matrix model ------------------------


def test_half_plus_three_from_the_rest_docs(tfs_server):
    # g3doc/api_rest.md: {"instances": [1.0, 2.0, 5.0]} -> {"predictions": [3.5, 4.0, 5.5]}
    response = post(tfs_server, "/v1/models/half_plus_three:predict", {"instances": [1.0, 2.0, 5.0]})
    assert response.json() == {"predictions": [3.5, 4.0, 5.5]}
    body = {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": -2.0}]}
    assert post(tfs_server, "/v1/models/half_plus_three:regress", body).json() == {"results": [3.5, 2.0]}


def test_tf2_model_predict_classify_regress(tfs_server):
    assert post(tfs_server, "/v1/models/tf2:predict", {"instances": [1.0, 2.0]}).json() == {"predictions": [2.5, 3.0]}
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert post(tfs_server, "/v1/models/tf2:classify", body).json() == {"results": [[["", 3.0]]]}
    body = {"signature_name": "regress_x_to_y2", "examples": [{"x": 2.0}]}
    assert post(tfs_server, "/v1/models/tf2:regress", body).json() == {"results": [4.0]}


def test_tf2_metadata_lists_the_init_op_signature(tfs_server):
    signatures = requests.get(tfs_server.url + "/v1/models/tf2/metadata", timeout=30).json()
    signature_defs = signatures["metadata"]["signature_def"]["signature_def"]
    assert "__saved_model_init_op" in signature_defs
    assert signature_defs["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert signature_defs["serving_default"]["inputs"]["x"]["tensor_shape"]["dim"] == [{"size": "1", "name": ""}]


def test_matrix_model(tfs_server):
    matrix = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    expected = [[2.5, 3.0, 3.5], [4.0, 4.5, 5.0], [5.5, 6.0, 6.5]]
    assert post(tfs_server, "/v1/models/matrix:predict", {"instances": [matrix]}).json() == {"predictions": [expected]}


def test_classify_with_context_and_several_examples(tfs_server):
    # regress_x2_to_y3 reads x2 (default 0) through the same tf.Example: y3 = 0.5 * x2 + 3.
    body = {"signature_name": "regress_x_to_y2", "context": {"x": 4.0}, "examples": [{}, {"x": 2.0}]}
    assert post(tfs_server, "/v1/models/default:regress", body).json() == {"results": [5.0, 4.0]}


def test_classify_and_regress_need_a_matching_signature(tfs_server):
    response = post(tfs_server, "/v1/models/default:classify", {"examples": [{"x": 1.0}]})
    assert response.status_code == 400
    response = post(tfs_server, "/v1/models/default:regress", {"signature_name": "nope", "examples": [{"x": 1.0}]})
    assert response.status_code == 400
    assert "No signature was found with the name: nope" in error_of(response)


def test_unknown_predict_signature(tfs_server):
    response = post(tfs_server, "/v1/models/default:predict", {"signature_name": "nope", "instances": [1.0]})
    assert response.status_code == 400
    assert 'Serving signature name: "nope" not found in signature def' in error_of(response)


# -- several named inputs and outputs (generated/multi_io) --------------------------------------


def test_multi_io_row_format(tfs_server):
    instances = [{"a": [1.0, 2.0], "b": 3, "tag": "hi"}, {"a": [-4.0, 0.5], "b": -1, "tag": {"b64": "AAE="}}]
    response = post(tfs_server, "/v1/models/multi_io:predict", {"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["total"] for p in predictions] == [6.0, -4.5]
    assert [p["b_plus_one"] for p in predictions] == [4, 0]
    assert [p["is_pos"] for p in predictions] == [True, False]
    assert predictions[0]["tag_bytes"] == {"b64": base64.b64encode(b"hi").decode()}
    assert predictions[1]["tag_bytes"] == {"b64": "AAE="}
    assert predictions[0]["tag_text"] == "hi"


def test_multi_io_columnar_format(tfs_server):
    inputs = {"a": [[1.0, 2.0]], "b": [3], "tag": ["x"], "ignored": 1}
    response = post(tfs_server, "/v1/models/multi_io:predict", {"inputs": inputs})
    outputs = response.json()["outputs"]
    assert outputs["total"] == [6.0] and outputs["b_plus_one"] == [4] and outputs["is_pos"] == [True]


def test_multi_io_errors(tfs_server):
    path = "/v1/models/multi_io:predict"
    response = post(tfs_server, path, {"instances": [[1.0, 2.0]]})
    assert response.status_code == 400 and "expecting list of objects" in error_of(response)
    response = post(tfs_server, path, {"inputs": {"a": [[1.0, 2.0]], "b": [3]}})
    assert response.status_code == 400 and "Missing named input: tag" in error_of(response)
    response = post(tfs_server, path, {"inputs": {"a": [[1.0, 2.0]], "b": [3.5], "tag": ["x"]}})
    assert response.status_code == 400 and "not of expected type: int32" in error_of(response)
    response = post(tfs_server, path, {"instances": [{"a": [1.0, 2.0], "b": 3, "tag": "x", "extra": 1}]})
    assert response.status_code == 400 and "does not have named input: extra" in error_of(response)
    response = post(tfs_server, path, {"instances": [{"a": [1.0, 2.0], "b": 3}]})
    assert response.status_code == 400 and "keys must be equal to: a,b,tag" in error_of(response)


def test_row_format_with_scalar_outputs_is_rejected(tfs_server):
    body = {"signature_name": "columnar_only", "instances": [{"v": 1.0, "w": 2.0}, {"v": 3.0, "w": 4.0}]}
    response = post(tfs_server, "/v1/models/multi_io:predict", body)
    assert response.status_code == 400 and "has no shape information" in error_of(response)
    body = {"signature_name": "columnar_only", "inputs": {"v": [1.0, 3.0], "w": [2.0, 4.0]}}
    assert post(tfs_server, "/v1/models/multi_io:predict", body).json() == {"outputs": {"v_sum": 4.0, "w_sum": 6.0}}


def test_every_error_is_json_and_the_server_keeps_serving(tfs_server):
    for body in ("", "[]", "{", '{"instances": [[1.0], [1.0, 2.0]]}', '{"instances": [], "inputs": []}'):
        response = post(tfs_server, "/v1/models/default:predict", body)
        assert response.status_code == 400
        assert error_of(response)
    assert post(tfs_server, "/v1/models/default:predict", {"instances": [2.0]}).json() == {"predictions": [3.0]}


# -- the appliance's hints after TF Serving's words (TF Serving itself stops at its first sentence) -------------

TFS_MODELS = "default, half_plus_three, matrix, mkl, multi_io, tf2, two_versions"  # the names in conftest's tfs_config


def signatures_of(server, model: str) -> str:
    metadata = requests.get(f"{server.url}/v1/models/{model}/metadata", timeout=30).json()
    return ", ".join(
        sorted(n for n in metadata["metadata"]["signature_def"]["signature_def"] if not n.startswith("__"))
    )


@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("GET", "/v1/models/nope", 404, f"Could not find any versions of model nope. Models served: {TFS_MODELS}."),
        (
            "POST",
            "/v1/models/nope:predict",
            404,
            f"Servable not found for request: Latest(nope). Models served: {TFS_MODELS}.",
        ),
        (
            "GET",
            "/v1/models/two_versions/versions/7",
            404,
            "Could not find version 7 of model two_versions. Versions of model two_versions: 124, 123.",
        ),
        (
            "POST",
            "/v1/models/two_versions/versions/7:predict",
            404,
            "Servable not found for request: Specific(two_versions, 7). Versions of model two_versions: 124, 123.",
        ),
        (
            "POST",
            "/v1/models/two_versions/labels/nope:predict",
            400,
            "Unrecognized servable version label: nope. Labels of model two_versions: canary (version 124), "
            "stable (version 123).",
        ),
        (
            "GET",
            "/v1/models/default/labels/nope/metadata",
            400,
            "Unrecognized servable version label: nope. Model default has no labels.",
        ),
    ],
)
def test_unknown_models_versions_and_labels_name_those_served(tfs_direct_server, method, path, status, message):
    response = requests.request(method, tfs_direct_server.url + path, json={"instances": [1.0]}, timeout=30)
    assert response.status_code == status
    assert error_of(response) == message


def test_unknown_signatures_name_the_models_signatures(tfs_direct_server):
    signatures = signatures_of(tfs_direct_server, "default")
    assert "serving_default" in signatures and "__" not in signatures
    response = post(tfs_direct_server, "/v1/models/default:predict", {"signature_name": "nope", "instances": [1.0]})
    assert response.status_code == 400
    assert error_of(response) == (
        f'Serving signature name: "nope" not found in signature def. Model default version 123 has signatures: '
        f"{signatures}."
    )
    response = post(tfs_direct_server, "/v1/models/default:regress", {"signature_name": "nope", "examples": [{}]})
    assert response.status_code == 400
    assert error_of(response) == f"No signature was found with the name: nope. Signatures: {signatures}."


def test_a_request_the_codec_refuses_also_says_what_the_signature_takes(tfs_direct_server):
    response = post(tfs_direct_server, "/v1/models/multi_io:predict", {"inputs": {"a": [[1.0, 2.0]], "b": [3]}})
    assert response.status_code == 400
    error = error_of(response)
    assert error.startswith("Missing named input: tag in 'inputs' object. ")  # TF Serving's words first
    assert error.endswith(
        'Signature "serving_default" of model multi_io version 1: input "a" expects float32 [-1, 2]; '
        'input "b" expects int32 [-1]; input "tag" expects string [-1].'
    )
