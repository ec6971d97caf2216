"""``POST /predict``, ``/health``, ``/`` and the TF Serving routes on the bundled models, over real HTTP.

Expected answers are computed in the test with TensorFlow directly on the same
SavedModels (``tf.saved_model.load``), not copied from the appliance.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_digits

from ..conftest import MODELS


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.data.astype(np.float32)[-20:], data.target[-20:]


def reference(model: str, version: int, signature: str, **inputs) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(str(MODELS / model / str(version)))
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def png_b64(pixels: np.ndarray) -> str:
    image = Image.fromarray((pixels.reshape(8, 8) * 255 / 16).astype(np.uint8)).resize((32, 32))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_predict_defaults_to_the_first_model_and_its_chosen_version(bundled_server, digits):
    pixels, _ = digits
    response = requests.post(bundled_server.url + "/predict", json={"input": pixels[:3].tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "digits" and body["version"] == 2
    expected = reference("digits", 2, "serving_default", pixels=pixels[:3])
    assert body["predictions"]["class"] == expected["class"].tolist()
    np.testing.assert_allclose(body["predictions"]["probabilities"], expected["probabilities"], rtol=1e-5, atol=1e-6)


def test_predict_pinned_version_and_model(bundled_server, digits):
    pixels, _ = digits
    body = {"model": "digits", "version": 1, "input": pixels[:2].tolist()}
    answer = requests.post(bundled_server.url + "/predict", json=body, timeout=30).json()
    assert answer["version"] == 1
    assert (
        answer["predictions"]["class"] == reference("digits", 1, "serving_default", pixels=pixels[:2])["class"].tolist()
    )


def test_predict_image_as_b64(bundled_server, digits):
    pixels, labels = digits
    images = [{"b64": png_b64(p)} for p in pixels]
    body = {"model": "digits", "signature_name": "image", "input": images}
    answer = requests.post(bundled_server.url + "/predict", json=body, timeout=30).json()
    accuracy = np.mean(np.array(answer["predictions"]["class"]) == labels)
    assert accuracy >= 0.8, answer


def test_tf_serving_predict_on_bundled_digits_both_formats(bundled_server, digits):
    pixels, _ = digits
    expected = reference("digits", 2, "serving_default", pixels=pixels[:2])
    rows = requests.post(
        bundled_server.url + "/v1/models/digits:predict", json={"instances": pixels[:2].tolist()}, timeout=30
    ).json()["predictions"]
    assert [r["class"] for r in rows] == expected["class"].tolist()
    columns = requests.post(
        bundled_server.url + "/v1/models/digits/versions/2:predict",
        json={"inputs": {"pixels": pixels[:2].tolist()}},
        timeout=30,
    ).json()["outputs"]
    assert columns["class"] == expected["class"].tolist()


def test_tf_serving_classify_and_regress_on_bundled_iris(bundled_server):
    flower = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}
    response = requests.post(
        bundled_server.url + "/v1/models/iris:classify",
        json={"signature_name": "classify", "examples": [flower]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (classes,) = response.json()["results"]
    assert [label for label, _ in classes] == ["setosa", "versicolor", "virginica"]
    assert max(classes, key=lambda c: c[1])[0] == "virginica"
    response = requests.post(
        bundled_server.url + "/v1/models/iris:regress",
        json={"signature_name": "regress", "examples": [flower]},
        timeout=30,
    )
    (width,) = response.json()["results"]
    assert 1.0 < width < 3.5


def test_health_reports_device_models_and_states(bundled_server):
    response = requests.get(bundled_server.url + "/health", timeout=30)
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ready"
    assert health["device"]["type"] == "CPU"
    models = {m["name"]: m for m in health["models"]}
    assert set(models) == {"digits", "iris"}
    for model in models.values():
        assert model["chosen_version"] == 2
        assert [(v["version"], v["state"]) for v in model["versions"]] == [(2, "AVAILABLE"), (1, "AVAILABLE")]


def test_index_page_is_for_people(bundled_server):
    response = requests.get(bundled_server.url + "/", headers={"Accept": "text/html"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "digits" in response.text and "/v1/models/" in response.text and bundled_server.url in response.text


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({}, 400, "missing 'input'"),
        ({"input": [[1.0] * 64], "bogus": 1}, 400, "unknown key 'bogus'"),
        ({"input": [[1.0] * 64], "model": "nope"}, 404, "Latest(nope)"),
        ({"input": [[1.0] * 64], "version": 9}, 404, "Specific(digits, 9)"),
        ({"input": [[1.0] * 64], "version": "two"}, 400, "'version' must be a positive integer"),
        ({"input": [[1.0] * 64], "version": "²"}, 400, "'version' must be a positive integer"),
        ({"input": [[1.0] * 64], "version": "0"}, 400, "'version' must be a positive integer"),
        ({"input": [[1.0] * 64], "version": 0}, 400, "'version' must be a positive integer"),
        ({"input": [[1.0] * 64], "version": True}, 400, "'version' must be a positive integer"),
        ({"input": [[1.0] * 64], "label": "nope"}, 400, "Unrecognized servable version label"),
        ({"input": [[1.0] * 64], "version": 1, "label": "x"}, 400, "cannot be supplied"),
        ({"input": [[1.0] * 64], "signature_name": "nope"}, 400, "not found in signature def"),
        ({"input": [["a"] * 64]}, 400, "not of expected type: float"),
        ({"input": [[1.0] * 64, [1.0] * 3]}, 400, ""),
        ({"input": [[1.0] * 3]}, 400, ""),
        ({"input": [1.0] * 64}, 400, ""),
        ({"input": {"b64": "AAAA"}, "signature_name": "image"}, 400, ""),
    ],
)
def test_predict_bad_input(bundled_server, body, status, message):
    response = requests.post(bundled_server.url + "/predict", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert message in error
    assert "Traceback" not in error


@pytest.mark.parametrize("data", [b"", b"{", b"[1]", b"\xff\xfe", b'{"input": NaN'])
def test_predict_malformed_json(bundled_server, data):
    response = requests.post(bundled_server.url + "/predict", data=data, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"].startswith("JSON")


def test_wrong_method_and_unknown_path(bundled_server):
    response = requests.get(bundled_server.url + "/predict", timeout=30)
    assert response.status_code == 405 and "not allowed" in response.json()["error"]
    response = requests.get(bundled_server.url + "/nope", timeout=30)
    assert response.status_code == 404 and "Not found" in response.json()["error"]


def test_oversized_body_is_refused_with_413_and_server_keeps_serving():
    from ..conftest import ApplianceProcess

    server = ApplianceProcess("--max_request_bytes", "1000")
    try:
        big = json.dumps({"input": [[1.0] * 64] * 50})
        response = requests.post(server.url + "/predict", data=big, timeout=30)
        assert response.status_code == 413
        assert "1000" in response.json()["error"]
        small = requests.post(server.url + "/predict", json={"input": [[0.0] * 64]}, timeout=30)
        assert small.status_code == 200
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.stderr


# -- errors that name the input, the model and the signature -------------------------------------------------

PIXELS_EXPECTED = (
    'input "pixels" expects float32 [-1, 64]'  # digits' serving_default, as models/build_models.py makes it
)


@pytest.mark.parametrize(
    "path, body, sent",
    [
        ("/predict", {"input": [[1.0] * 3]}, "float32 [1, 3]"),
        ("/predict", {"input": [1.0] * 64}, "float32 [64]"),
        ("/predict", {"input": [[[1.0] * 64]]}, "float32 [1, 1, 64]"),
        ("/v1/models/digits:predict", {"instances": [[1.0] * 3, [2.0] * 3]}, "float32 [2, 3]"),
        ("/v1/models/digits/versions/1:predict", {"inputs": {"pixels": [1.0] * 64}}, "float32 [64]"),
    ],
)
def test_an_input_of_the_wrong_shape_is_named_with_the_shape_expected_and_sent(bundled_server, path, body, sent):
    response = requests.post(bundled_server.url + path, json=body, timeout=30)
    assert response.status_code == 400
    assert response.json() == {"error": f"{PIXELS_EXPECTED}; got {sent}"}


def test_bytes_for_a_float_input_are_refused_naming_what_the_signature_takes(bundled_server):
    response = requests.post(bundled_server.url + "/predict", json={"input": [{"b64": "AAAA"}]}, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "is not of expected type: float" in error  # the codec's words, as TF Serving's
    assert error.endswith(f'. Signature "serving_default" of model digits version 2: {PIXELS_EXPECTED}.')


def test_unknown_models_signatures_and_versions_name_those_served(bundled_server):
    health = requests.get(bundled_server.url + "/health", timeout=30).json()
    served = ", ".join(sorted(m["name"] for m in health["models"]))
    response = requests.post(
        bundled_server.url + "/predict", json={"model": "digit", "input": [[1.0] * 64]}, timeout=30
    )
    assert response.status_code == 404
    assert response.json()["error"] == f"Servable not found for request: Latest(digit). Models served: {served}."

    metadata = requests.get(bundled_server.url + "/v1/models/digits/versions/1/metadata", timeout=30).json()
    signatures = sorted(n for n in metadata["metadata"]["signature_def"]["signature_def"] if not n.startswith("__"))
    body = {"model": "digits", "version": 1, "signature_name": "nope", "input": [[1.0] * 64]}
    response = requests.post(bundled_server.url + "/predict", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"] == (
        f'Serving signature name: "nope" not found in signature def. Model digits version 1 has signatures: '
        f"{', '.join(signatures)}."
    )

    (digits,) = [m for m in health["models"] if m["name"] == "digits"]
    versions = ", ".join(str(v["version"]) for v in digits["versions"])
    response = requests.post(bundled_server.url + "/predict", json={"version": 9, "input": [[1.0] * 64]}, timeout=30)
    assert response.status_code == 404
    assert (
        response.json()["error"]
        == f"Servable not found for request: Specific(digits, 9). Versions of model digits: {versions}."
    )
