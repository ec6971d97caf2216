"""The API reference: the OpenAPI 3.1 document of every endpoint (``GET /openapi.json``) and its page (``GET /docs``).

    app.route("/openapi.json", "GET", openapi_json)
    app.route("/docs", "GET", docs_page)

The document is Python data; TF Serving's routes (status, metadata, the verbs, on
a model, a version or a label) are generated. Its examples, requests for the bundled
models that answer 200 on them, prefill the try-it forms of the docs page
(``static/docs.html``); a label has no example, since the bundled models have none.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import bottle

from .. import __version__
from ..errors import Code
from ..serving.manager import State
from .metrics import PATH as METRICS_PATH
from .responses import json_response

JSON = "application/json"
HTML_TYPE = "text/html; charset=utf-8"

TFS_TAG = "TensorFlow Serving"
APPLIANCE_TAG = "Appliance"
SERVER_TAG = "Server"

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]
# No whole numbers among tf.Example floats: the docs page writes 6.0 as 6 (JSON.stringify), an int64 feature.
IRIS_FLOWER = {"sepal_length": 7.7, "sepal_width": 2.6, "petal_length": 6.9, "petal_width": 2.3}
# fmt: off
DIGIT_EIGHT = [0, 0, 10, 14, 8, 1, 0, 0, 0, 2, 16, 14, 6, 1, 0, 0, 0, 0, 15, 15, 8, 15, 0, 0, 0, 0, 5, 16, 16, 10,
               0, 0, 0, 0, 12, 15, 15, 12, 0, 0, 0, 4, 16, 6, 4, 16, 6, 0, 0, 8, 16, 10, 8, 16, 8, 0, 0, 1, 8, 12,
               14, 12, 1, 0]  # the README's digit: an 8
# fmt: on

DESCRIPTION = """\
Serves TensorFlow SavedModels over TensorFlow Serving's REST API (`/v1/models/...`, wire-compatible: the same
request and response formats, error bodies and status codes), the Open Inference Protocol (`/v2/...`, KServe v2
as Triton serves it, with its binary tensor data, model repository and statistics extensions) and a simpler
`POST /predict`.

- Every error body is `{"error": "<message>"}`.
- Under `/v1/` TF Serving's rules hold: the path is matched case-insensitively, and an unknown path or a method
  not listed here (CORS preflights aside) answers 400 `Malformed request`. Elsewhere an unknown path answers 404
  and a method not listed here 405; `/v2` paths are matched as sent, the model name percent-decoded.
- A request whose `Host` is not an allowed name answers 403; when the appliance listens beyond loopback (or was
  given a token) every request needs `Authorization: Bearer <token>` (401 otherwise), and with
  `--require_token_for_control` so do choosing and reloading versions, and loading and unloading models.
- Browsers may call it only from the origins given with `--cors_allowed_origin`, whose preflights (`OPTIONS`)
  it answers.
- Request bodies over `--max_request_bytes` answer 413 before they are read; a body sent with
  `Content-Encoding: gzip` is inflated, with 413 as soon as it inflates past that limit (other encodings but
  `identity`: 415).
- With a remote TF Serving configured, TF Serving requests may be answered by it: its status and body come back
  as they are, and the `X-Appliance-Backend` header says which backend answered.
"""


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict:
    return _ref("schemas", name)


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


# --- schemas ------------------------------------------------------------------------------------------------------

_SEGMENT = "^[^/:]+$"  # a model name or label fills one path segment and cannot hold TF Serving's ':' separator

SCHEMAS = {
    "Error": {
        "type": "object",
        "description": "Every error, in TensorFlow Serving's format.",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "additionalProperties": False,
    },
    "Base64": {
        "type": "object",
        "description": "Binary data (a DT_STRING value), base64-encoded.",
        "required": ["b64"],
        "properties": {"b64": {"type": "string", "contentEncoding": "base64"}},
        "additionalProperties": False,
    },
    "Tensor": {
        "description": 'A tensor as JSON: a scalar, `{"b64": ...}` for bytes, or nested lists of them. '
        "`NaN`, `Infinity` and `-Infinity` are read and written as bare tokens.",
        "anyOf": [
            {"type": ["number", "string", "boolean"]},
            _schema("Base64"),
            {"type": "array", "items": _schema("Tensor")},
        ],
    },
    "NamedTensors": {
        "type": "object",
        "description": "Tensors by input (or output) name.",
        "additionalProperties": _schema("Tensor"),
    },
    "TensorOrNamedTensors": {"anyOf": [_schema("Tensor"), _schema("NamedTensors")]},
    "PredictRequest": {
        "type": "object",
        "description": "Row format (`instances`: one value, or one object of named inputs, per example) or "
        "columnar format (`inputs`: the whole tensor, or an object of named tensors); exactly one "
        "of the two. Keys that name no input are ignored in columnar format.",
        "properties": {
            "signature_name": {"type": "string", "description": "Default: `serving_default`."},
            "instances": {"type": "array", "minItems": 1, "items": _schema("TensorOrNamedTensors")},
            "inputs": _schema("TensorOrNamedTensors"),
        },
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    },
    "PredictResponse": {
        "description": "`predictions` (one entry per instance) answers row format; `outputs` answers columnar "
        "format. A single output is unwrapped; several are named.",
        "oneOf": [
            {
                "type": "object",
                "required": ["predictions"],
                "properties": {"predictions": {"type": "array", "items": _schema("TensorOrNamedTensors")}},
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["outputs"],
                "properties": {"outputs": _schema("TensorOrNamedTensors")},
                "additionalProperties": False,
            },
        ],
    },
    "FeatureValue": {
        "description": "A tf.Example feature: integers are int64, numbers with a fraction float, strings and "
        '`{"b64": ...}` bytes; a list holds values of one kind.',
        "anyOf": [
            {"type": ["number", "string", "boolean"]},
            _schema("Base64"),
            {"type": "array", "items": {"anyOf": [{"type": ["number", "string", "boolean"]}, _schema("Base64")]}},
        ],
    },
    "Example": {
        "type": "object",
        "description": "One tf.Example: its features by name.",
        "additionalProperties": _schema("FeatureValue"),
    },
    "ExamplesRequest": {
        "type": "object",
        "description": "tf.Examples for a classify or regress signature; `context` features are added to every "
        "example.",
        "required": ["examples"],
        "properties": {
            "signature_name": {"type": "string", "description": "Default: `serving_default`."},
            "context": _schema("Example"),
            "examples": {"type": "array", "minItems": 1, "items": _schema("Example")},
        },
    },
    "ClassifyResponse": {
        "type": "object",
        "description": 'One list of `[label, score]` per example (`""` as the label when the model has no classes).',
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "description": "`[label, score]`: a string, then a number.",
                        "minItems": 2,
                        "maxItems": 2,
                        "items": {"type": ["string", "number"]},
                    },
                },
            },
        },
        "additionalProperties": False,
    },
    "RegressResponse": {
        "type": "object",
        "description": "One value per example.",
        "required": ["results"],
        "properties": {"results": {"type": "array", "items": {"type": "number"}}},
        "additionalProperties": False,
    },
    "ModelStatus": {
        "type": "object",
        "description": "The versions' states, newest first (proto3 JSON: the version is a string).",
        "required": ["model_version_status"],
        "properties": {
            "model_version_status": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["version", "state", "status"],
                    "properties": {
                        "version": {"type": "string", "pattern": "^[0-9]+$"},
                        "state": {"enum": [state.value for state in State]},
                        "status": {
                            "type": "object",
                            "required": ["error_code", "error_message"],
                            "properties": {
                                "error_code": {"enum": [code.name for code in Code]},
                                "error_message": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
    "TensorInfo": {
        "type": "object",
        "required": ["dtype", "tensor_shape"],
        "properties": {
            "name": {"type": "string"},
            "dtype": {"type": "string", "pattern": "^DT_[A-Z0-9_]+$"},
            "tensor_shape": {
                "type": "object",
                "properties": {
                    "dim": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "size": {"type": "string", "pattern": "^-?[0-9]+$", "description": "-1: any"},
                                "name": {"type": "string"},
                            },
                        },
                    },
                    "unknown_rank": {"type": "boolean"},
                },
            },
        },
    },
    "SignatureDef": {
        "type": "object",
        "required": ["inputs", "outputs", "method_name"],
        "properties": {
            "inputs": {"type": "object", "additionalProperties": _schema("TensorInfo")},
            "outputs": {"type": "object", "additionalProperties": _schema("TensorInfo")},
            "method_name": {"type": "string"},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "description": "The version's SignatureDefs (proto3 JSON; int64 sizes are strings). TF2 models also "
        "list `__saved_model_init_op`.",
        "required": ["model_spec", "metadata"],
        "properties": {
            "model_spec": {
                "type": "object",
                "required": ["name", "version"],
                "properties": {
                    "name": {"type": "string"},
                    "signature_name": {"type": "string"},
                    "version": {"type": "string", "pattern": "^[0-9]+$"},
                },
            },
            "metadata": {
                "type": "object",
                "required": ["signature_def"],
                "properties": {
                    "signature_def": {
                        "type": "object",
                        "required": ["signature_def"],
                        "properties": {
                            "signature_def": {"type": "object", "additionalProperties": _schema("SignatureDef")},
                        },
                    },
                },
            },
        },
    },
    "SimplePredictRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {
                **_schema("TensorOrNamedTensors"),
                "description": "The tensor of a single-input signature, or an object naming each input.",
            },
            "model": {**_nullable({"type": "string"}), "description": "Default: the first model served."},
            "version": {
                "description": "Default: the model's chosen version.",
                "anyOf": [
                    {"type": "integer", "minimum": 1},
                    {"type": "string", "pattern": "^[0-9]+$"},
                    {"type": "null"},
                ],
            },
            "label": _nullable({"type": "string"}),
            "signature_name": {**_nullable({"type": "string"}), "description": "Default: `serving_default`."},
        },
        "additionalProperties": False,
        "not": {
            "description": "a version and a label cannot both be given",
            "required": ["version", "label"],
            "properties": {"version": {"not": {"type": "null"}}, "label": {"type": "string"}},
        },
    },
    "SimplePredictResponse": {
        "type": "object",
        "required": ["predictions", "model", "version"],
        "properties": {
            "predictions": {
                **_schema("TensorOrNamedTensors"),
                "description": "The single output, or the outputs by name.",
            },
            "model": {"type": "string"},
            "version": {"type": "integer", "description": "The version that answered."},
        },
        "additionalProperties": False,
    },
    "ChooseRequest": {
        "description": "Exactly one of a version number or a label.",
        "oneOf": [
            {
                "type": "object",
                "required": ["version"],
                "properties": {
                    "version": {
                        "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^0*[1-9][0-9]*$"}],
                        "description": 'A number, or its digits as status shows it: `2` or `"2"`.',
                    }
                },
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["label"],
                "properties": {"label": {"type": "string"}},
                "additionalProperties": False,
            },
        ],
    },
    "ModelSummary": {
        "type": "object",
        "required": ["name", "base_path", "version_policy", "labels", "chosen_version", "versions"],
        "properties": {
            "name": {"type": "string"},
            "base_path": {"type": "string"},
            "version_policy": {"type": "string", "examples": ["latest 1", "all", "specific 1, 2"]},
            "labels": {"type": "object", "additionalProperties": {"type": "integer"}},
            "chosen_version": {
                **_nullable({"type": "integer"}),
                "description": "The version answering requests that name none (null: none is AVAILABLE).",
            },
            "versions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["version", "state", "error"],
                    "properties": {
                        "version": {"type": "integer"},
                        "state": {"enum": [state.value for state in State]},
                        "error": _nullable({"type": "string"}),
                    },
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "device", "models"],
        "properties": {
            "status": {
                "enum": ["loading", "ready", "degraded"],
                "description": "`loading` (503) until the first load of every model has finished; then `ready`, "
                "or `degraded` when some model has no AVAILABLE version.",
            },
            "version": {"type": "string", "description": "The appliance's version."},
            "device": {
                "type": "object",
                "required": ["type", "name", "memory_growth", "count"],
                "properties": {
                    "type": {"enum": ["CPU", "GPU"]},
                    "name": {"type": "string"},
                    "memory_growth": _nullable({"type": "boolean"}),
                    "count": {"type": "integer"},
                },
            },
            "models": {"type": "array", "items": _schema("ModelSummary")},
            "unavailable_models": {"type": "array", "items": {"type": "string"}},
            "remote": {
                "type": "object",
                "description": "The remote TF Serving, when one is configured.",
                "required": ["url", "state", "latency_ms", "versions", "routing", "error"],
                "properties": {
                    "url": {"type": "string"},
                    "state": {"enum": ["up", "down", "unknown"]},
                    "latency_ms": _nullable({"type": "number"}),
                    "versions": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "integer"}},
                    },
                    "routing": {"type": "object", "additionalProperties": {"type": "string"}},
                    "error": _nullable({"type": "string"}),
                },
            },
        },
    },
}

# The Open Inference Protocol's documents (KServe v2, as Triton writes them).
V2_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32"]
V2_DATATYPES += ["FP64", "BF16", "BYTES"]
_V2_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_V2_PARAMETERS = {"type": "object", "description": "Parameters; those not listed here are ignored."}
V2_SCHEMAS = {
    "V2TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}, "description": "-1: a dimension of any size."},
        },
    },
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}, "description": "AVAILABLE ones, newest first."},
            "platform": {"enum": ["tensorflow_savedmodel", "tensorflow_lite"]},
            "inputs": {"type": "array", "items": _schema("V2TensorMetadata")},
            "outputs": {"type": "array", "items": _schema("V2TensorMetadata")},
        },
    },
    "V2ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "V2InferInput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "description": "`data` (row-major, flat or nested; BYTES as strings), or with the binary tensor data "
        "extension a `binary_data_size` parameter and that many bytes after the JSON.",
        "properties": {
            "name": {"type": "string"},
            "shape": _V2_SHAPE,
            "datatype": {"enum": V2_DATATYPES},
            "parameters": {
                **_V2_PARAMETERS,
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
            "data": {"description": "The tensor's elements: numbers, booleans or strings, flat or nested."},
        },
    },
    "V2InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "description": "Echoed in the response."},
            "parameters": {
                **_V2_PARAMETERS,
                "properties": {
                    "signature_name": {"type": "string", "description": "Default: `serving_default`."},
                    "binary_data_output": {"type": "boolean", "description": "Every output as binary data."},
                },
            },
            "inputs": {"type": "array", "items": _schema("V2InferInput")},
            "outputs": {
                "type": "array",
                "description": "The outputs to compute (default: all of the signature's).",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "parameters": {
                            **_V2_PARAMETERS,
                            "properties": {"binary_data": {"type": "boolean"}},
                            "not": {"required": ["classification"]},
                        },
                    },
                },
            },
        },
    },
    "V2InferResponse": {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string", "pattern": "^[0-9]+$"},
            "id": {"type": "string"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {
                        "name": {"type": "string"},
                        "datatype": {"enum": V2_DATATYPES},
                        "shape": _V2_SHAPE,
                        "data": {"type": "array", "description": "Flat, row-major; absent for binary data."},
                        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
                    },
                },
            },
        },
    },
    "V2ModelConfig": {
        "type": "object",
        "description": "Triton's model configuration, as far as a SavedModel has one.",
        "required": ["name", "platform", "max_batch_size", "input", "output"],
        "properties": {
            "name": {"type": "string"},
            "platform": {"type": "string"},
            "backend": {"type": "string"},
            "max_batch_size": {"type": "integer", "description": "0: not batched; else dims leave the batch out."},
            "input": {"type": "array", "items": {"type": "object"}},
            "output": {"type": "array", "items": {"type": "object"}},
        },
    },
    "V2RepositoryIndex": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "state": {"type": "string"},
                "reason": {"type": "string"},
            },
        },
    },
    "V2Statistics": {
        "type": "object",
        "required": ["model_stats"],
        "properties": {"model_stats": {"type": "array", "items": {"type": "object"}}},
    },
}
_FIGURE = {"oneOf": [{"type": "number"}, {"type": "null"}]}
SCHEMAS.update(V2_SCHEMAS)
SCHEMAS.update(
    {
        "CompareRequest": {
            "type": "object",
            "required": ["version", "against"],
            "properties": {
                "version": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+$"}]},
                "against": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+$"}]},
                "limit": {"type": "integer", "minimum": 1, "description": "The latest requests replayed (500)."},
                "log": {
                    "type": "string",
                    "description": "The absolute path of a request log or warm-up file (a TFRecord of "
                    "PredictionLog) on the appliance's machine; by default the model's recorded requests, else "
                    "its two versions' warm-up requests.",
                },
            },
            "additionalProperties": False,
        },
        "Comparison": {
            "type": "object",
            "required": ["model", "version", "against", "state", "done", "total", "error", "summary", "result"],
            "properties": {
                "model": {"type": "string"},
                "version": _nullable({"type": "integer"}),
                "against": _nullable({"type": "integer"}),
                "state": {
                    "enum": ["none", "running", "done", "cancelled", "failed"],
                    "description": "none: no comparison of the model has run since the appliance started.",
                },
                "done": {"type": "integer", "description": "Requests replayed so far."},
                "total": {"type": "integer"},
                "error": {**_nullable({"type": "string"}), "description": "Why a failed comparison stopped."},
                "summary": {
                    **_nullable({"type": "string"}),
                    "examples": ["v1 agrees with v2 on 96.8% of 500 requests; 3 fail on v1"],
                },
                "result": {
                    **_nullable({"type": "object"}),
                    "description": "Once finished: per output `predictions`, `agreeing`, `agreement`, "
                    "`mean_abs_diff`, `max_abs_diff`; per version (`version`, `against`) `fails_alone`, "
                    "`sample_error`, `p50_ms`, `p95_ms`; `requests`, `both_failed`, `skipped`, `cancelled`.",
                },
            },
        },
    }
)
SCHEMAS.update(
    {
        "WarmupRequest": {
            "type": "object",
            "required": ["from_recent_requests"],
            "properties": {
                "from_recent_requests": {
                    "type": "boolean",
                    "description": "Warm each new version of the model up with its most recent recorded requests "
                    "(after the version's own warm-up); false removes the snapshot of them.",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1000,
                    "description": "How many of the most recent recorded requests (100).",
                },
            },
            "additionalProperties": False,
        },
        "Warmup": {
            "type": "object",
            "required": ["model", "from_recent_requests", "limit", "records", "last_load"],
            "properties": {
                "model": {"type": "string"},
                "from_recent_requests": {"type": "boolean"},
                "limit": {"type": "integer", "description": "0 while it is off."},
                "records": {"type": "integer", "description": "Requests in the snapshot new versions replay."},
                "last_load": {
                    **_nullable(
                        {
                            "type": "object",
                            "required": ["version", "replayed", "skipped"],
                            "properties": {
                                "version": {"type": "integer"},
                                "replayed": {"type": "integer"},
                                "skipped": {"type": "integer"},
                            },
                        }
                    ),
                    "description": "The last version warmed up with it since the appliance started: the requests "
                    "it ran and those it refused (skipped, as a changed signature refuses them).",
                },
            },
        },
    }
)

_SHADOW_COUNTS = {
    "compared": {"type": "integer", "description": "Requests both versions answered, compared."},
    "fails_on_candidate": {"type": "integer", "description": "Requests the candidate alone failed."},
}
SCHEMAS.update(
    {
        "ShadowRequest": {
            "type": "object",
            "required": ["version"],
            "properties": {
                "version": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+$"}]},
                "share": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                    "description": "The share of the live requests answered by other versions also sent to this "
                    "one (0.1).",
                },
            },
            "additionalProperties": False,
        },
        "Shadow": {
            "type": "object",
            "required": [
                "model",
                "active",
                "version",
                "share",
                "compared",
                "agreement",
                "outputs",
                "fails_on_candidate",
                "sample_error",
                "dropped",
                "unavailable",
                "candidate_p50_ms",
                "since",
                "summary",
            ],
            "properties": {
                "model": {"type": "string"},
                "active": {"type": "boolean", "description": "false: no shadow traffic (now, or any more)."},
                "version": {**_nullable({"type": "integer"}), "description": "The candidate version."},
                "share": _FIGURE,
                **_SHADOW_COUNTS,
                "agreement": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "description": "Per output with a class (argmax of scores, or the value itself): the share of "
                    "rows the candidate agrees on.",
                },
                "outputs": {
                    "type": "array",
                    "description": "Per output: `label`, `predictions`, `agreeing`, `agreement`, `mean_abs_diff`, "
                    "`max_abs_diff`, as a comparison reports them.",
                    "items": {"type": "object"},
                },
                "sample_error": _nullable({"type": "string"}),
                "dropped": {"type": "integer", "description": "Sampled but not sent: the queue was full."},
                "unavailable": {"type": "integer", "description": "Sampled while the candidate was not AVAILABLE."},
                "candidate_p50_ms": _FIGURE,
                "since": {**_nullable({"type": "string"}), "description": "When it was turned on (UTC)."},
                "summary": {**_nullable({"type": "string"}), "examples": ["v2 agrees on 97.2% of 1 203 requests"]},
            },
        },
    }
)
SCHEMAS["ModelSummary"]["properties"]["shadow"] = {  # type: ignore[index]
    **_nullable(
        {
            "type": "object",
            "required": ["candidate", "compared", "agreement", "output", "fails_on_candidate"],
            "properties": {
                "candidate": {"type": "integer"},
                "agreement": _FIGURE,
                "output": _nullable({"type": "string"}),
                **_SHADOW_COUNTS,
            },
        }
    ),
    "description": "In /health only: the model's shadow traffic (null when off); `agreement` is that of `output`, "
    "its first output with a class.",
}

# --- responses ----------------------------------------------------------------------------------------------------

ERRORS = {
    400: ("BadRequest", "The request is malformed or names an unknown label, signature or input."),
    401: ("Unauthorized", "A token is required and the request has none, or the wrong one."),
    403: ("Forbidden", "The `Host` header names a host this server does not answer to."),
    404: ("NotFound", "No such model or version."),
    409: ("Conflict", "A comparison of this model is running already."),
    413: ("PayloadTooLarge", "The request body is larger than `--max_request_bytes`."),
    429: ("ResourceExhausted", "The model ran out of resources (e.g. memory) for this request."),
    500: ("InternalError", "The server failed; its log says why."),
    501: ("NotImplemented", "The model's signature has a dtype JSON cannot be converted to."),
    503: ("Unavailable", "No model is served yet, the batching queue is full, or the remote TF Serving is down."),
    504: ("DeadlineExceeded", "The model ran longer than `--rest_api_timeout_in_ms`."),
}
GUARDED = (401, 403, 500)  # the Host and token guard stands in front of every route
INFERENCE_ERRORS = (400, 404, 413, 429, 501, 503, 504, *GUARDED)
READ_ERRORS = (400, 404, 503, *GUARDED)

_error_content = {JSON: {"schema": _schema("Error")}}
RESPONSES = {name: {"description": description, "content": _error_content} for name, description in ERRORS.values()}
RESPONSES["Unauthorized"]["headers"] = {
    "WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": 'Bearer realm="appliance"'}},
}


def _errors(codes) -> dict:
    return {str(code): _ref("responses", ERRORS[code][0]) for code in sorted(codes)}


def _ok(description: str, schema: dict, media_type: str = JSON, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {media_type: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return {"200": response}


def _json_body(schema_name: str, example) -> dict:
    return {"required": True, "content": {JSON: {"schema": _schema(schema_name), "example": example}}}


# --- parameters ---------------------------------------------------------------------------------------------------


LABEL_NOTE = (
    "A version label from a `models.config` (`version_labels`). The bundled models have none, so there is no "
    "example to try: give them labels with `--model_config_file` first."
)


def _path_parameter(name: str, schema: dict, description: str, example) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
        "example": example,
    }


PARAMETERS = {
    "ModelName": _path_parameter("name", {"type": "string", "pattern": _SEGMENT}, "The model's name.", "iris"),
    "Version": _path_parameter(
        "version", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "A version number.", 2
    ),
    "V2ModelName": _path_parameter(
        "name", {"type": "string", "pattern": "^[^/]+$"}, "The model's name (percent-encoded).", "digits"
    ),
    "Label": {
        "name": "label",
        "in": "path",
        "required": True,
        "description": LABEL_NOTE,
        "schema": {"type": "string", "pattern": _SEGMENT},
    },
}

BACKEND_HEADER = {
    "X-Appliance-Backend": {
        "description": "Which backend answered, when a remote TF Serving is configured.",
        "schema": {"enum": ["local", "remote"]},
    },
}

# --- TF Serving's routes ------------------------------------------------------------------------------------------

# The forms of a TF Serving URL: the model's chosen version, a version by number, a version by label.
TFS_FORMS = (
    ("", "", ("ModelName",)),
    ("/versions/{version}", "Version", ("ModelName", "Version")),
    ("/labels/{label}", "Label", ("ModelName", "Label")),
)
FORM_TEXT = {"": "the model's chosen version", "Version": "one version", "Label": "the version a label names"}

VERBS = {
    "predict": ("Predict", "PredictRequest", {"instances": IRIS_ROWS}, "PredictResponse"),
    "classify": (
        "Classify",
        "ExamplesRequest",
        {"signature_name": "classify", "examples": [IRIS_FLOWER]},
        "ClassifyResponse",
    ),
    "regress": (
        "Regress",
        "ExamplesRequest",
        {"signature_name": "regress", "examples": [{k: v for k, v in IRIS_FLOWER.items() if k != "petal_width"}]},
        "RegressResponse",
    ),
}


def _tf_serving_paths() -> dict:
    paths = {}
    for suffix, form, parameters in TFS_FORMS:
        base = "/v1/models/{name}" + suffix
        refs = [_ref("parameters", p) for p in parameters]
        on = FORM_TEXT[form]
        paths[base] = {
            "parameters": refs,
            "get": {
                "tags": [TFS_TAG],
                "operationId": f"getModelStatus{form}",
                "summary": "Status of every version" if form == "Label" else f"Status of {on}",
                "description": "Without a version, every served version of the model: a label is ignored here, "
                "as TF Serving does." + (f" {LABEL_NOTE}" if form == "Label" else ""),
                "responses": {
                    **_ok("The versions' states.", _schema("ModelStatus"), headers=BACKEND_HEADER),
                    **_errors(READ_ERRORS),
                },
            },
        }
        paths[base + "/metadata"] = {
            "parameters": refs,
            "get": {
                "tags": [TFS_TAG],
                "operationId": f"getModelMetadata{form}",
                "summary": f"Signatures of {on}",
                **({"description": LABEL_NOTE} if form == "Label" else {}),
                "responses": {
                    **_ok("The SignatureDefs.", _schema("ModelMetadata"), headers=BACKEND_HEADER),
                    **_errors(READ_ERRORS),
                },
            },
        }
        for verb, (title, request, example, response) in VERBS.items():
            paths[f"{base}:{verb}"] = {
                "parameters": refs,
                "post": {
                    "tags": [TFS_TAG],
                    "operationId": f"{verb}{form}",
                    "summary": f"{title} with {on}",
                    **({"description": LABEL_NOTE} if form == "Label" else {}),
                    "requestBody": _json_body(request, example),
                    "responses": {
                        **_ok(f"The {verb} results.", _schema(response), headers=BACKEND_HEADER),
                        **_errors(INFERENCE_ERRORS),
                    },
                },
            }
    return paths


# --- the appliance's own routes -----------------------------------------------------------------------------------


def _appliance_paths() -> dict:
    summary = _ok("The model's versions, labels and chosen version.", _schema("ModelSummary"))
    digits = {**PARAMETERS["ModelName"], "example": "digits"}
    return {
        "/predict": {
            "post": {
                "tags": [APPLIANCE_TAG],
                "operationId": "simplePredict",
                "summary": "Predict (simple)",
                "description": "Runs a signature (default `serving_default`) of a model (default: the first "
                "served) on its chosen version, or on the version or label given.",
                "requestBody": _json_body("SimplePredictRequest", {"input": [DIGIT_EIGHT]}),
                "responses": {
                    **_ok("The outputs, and the model and version that answered.", _schema("SimplePredictResponse")),
                    **_errors(INFERENCE_ERRORS),
                },
            },
        },
        "/v1/appliance/models/{name}/chosen": {
            "parameters": [digits],
            "get": {
                "tags": [APPLIANCE_TAG],
                "operationId": "getChosenVersion",
                "summary": "The chosen version of a model",
                "responses": {**summary, **_errors((404, *GUARDED))},
            },
            "put": {
                "tags": [APPLIANCE_TAG],
                "operationId": "chooseVersion",
                "summary": "Choose the version that answers requests naming none",
                "description": "Loads the version first when needed; the choice is remembered across restarts.",
                "requestBody": _json_body("ChooseRequest", {"version": 2}),
                "responses": {**summary, **_errors((400, 404, 413, *GUARDED))},
            },
        },
        "/v1/appliance/models/{name}/reload": {
            "parameters": [digits],
            "post": {
                "tags": [APPLIANCE_TAG],
                "operationId": "reloadModel",
                "summary": "Reload every loaded version of a model from disk",
                "description": "Each AVAILABLE version is loaded afresh and swapped in without failing a "
                "request; a version that fails to reload keeps serving as it was, and the first "
                "such failure is the answer.",
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {"type": "object", "maxProperties": 0, "description": "Nothing, or `{}`."},
                            "example": {},
                        }
                    },
                },
                "responses": {**summary, **_errors((400, 404, 413, *GUARDED))},
            },
        },
        "/v1/appliance/models/{name}/compare": {
            "parameters": [digits],
            "post": {
                "tags": [APPLIANCE_TAG],
                "operationId": "compareVersions",
                "summary": "Compare two versions on recorded requests, in the background",
                "description": "Replays the requests against both versions with a bounded share of the CPU; "
                "GET follows its progress and gives the result.",
                "requestBody": _json_body("CompareRequest", {"version": 1, "against": 2}),
                "responses": {
                    "202": {"description": "Started.", "content": {JSON: {"schema": _schema("Comparison")}}},
                    **_errors((400, 404, 409, 413, *GUARDED)),
                },
            },
            "get": {
                "tags": [APPLIANCE_TAG],
                "operationId": "getComparison",
                "summary": "The running or last comparison of a model: progress, then result",
                "responses": {**_ok("The comparison.", _schema("Comparison")), **_errors((404, *GUARDED))},
            },
            "delete": {
                "tags": [APPLIANCE_TAG],
                "operationId": "cancelComparison",
                "summary": "Cancel the running comparison (its figures so far become its result)",
                "responses": {**_ok("The comparison.", _schema("Comparison")), **_errors((404, *GUARDED))},
            },
        },
        "/v1/appliance/models/{name}/shadow": {
            "parameters": [digits],
            "get": {
                "tags": [APPLIANCE_TAG],
                "operationId": "getShadow",
                "summary": "A model's shadow traffic to a candidate version, and how the candidate agrees",
                "responses": {**_ok("The figures.", _schema("Shadow")), **_errors((404, *GUARDED))},
            },
            "put": {
                "tags": [APPLIANCE_TAG],
                "operationId": "setShadow",
                "summary": "Send a share of the live requests also to a candidate version, in the background",
                "description": "Its answers are compared with the live ones and discarded; the live answer never "
                "waits. The same candidate keeps its figures; another starts afresh. Lasts until the appliance "
                "stops.",
                "requestBody": _json_body("ShadowRequest", {"version": 2, "share": 0.1}),
                "responses": {**_ok("The figures.", _schema("Shadow")), **_errors((400, 404, 413, *GUARDED))},
            },
            "delete": {
                "tags": [APPLIANCE_TAG],
                "operationId": "clearShadow",
                "summary": "Stop shadow traffic (answers the figures until then)",
                "responses": {**_ok("The figures.", _schema("Shadow")), **_errors((404, *GUARDED))},
            },
        },
        "/v1/appliance/models/{name}/warmup": {
            "parameters": [digits],
            "get": {
                "tags": [APPLIANCE_TAG],
                "operationId": "getWarmup",
                "summary": "Whether new versions of a model warm up with its recent recorded requests",
                "responses": {**_ok("The setting.", _schema("Warmup")), **_errors((404, *GUARDED))},
            },
            "put": {
                "tags": [APPLIANCE_TAG],
                "operationId": "setWarmup",
                "summary": "Warm new versions of a model up with its recent recorded requests, or stop",
                "description": "Turning it on writes a snapshot of the model's most recent recorded requests (400 "
                "when none are recorded) in the appliance's data folder, never in the model's; each version that "
                "loads refreshes it and replays it after its own warm-up, skipping the requests it refuses. "
                "Remembered across restarts.",
                "requestBody": _json_body("WarmupRequest", {"from_recent_requests": False}),
                "responses": {**_ok("The setting.", _schema("Warmup")), **_errors((400, 404, 413, *GUARDED))},
            },
        },
    }


V2_TAG = "Open Inference Protocol"
DIGITS_V2_REQUEST = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": DIGIT_EIGHT}]}
V2_FORMS = (("", ("V2ModelName",)), ("/versions/{version}", ("V2ModelName", "Version")))
V2_ERRORS = (400, 404, *GUARDED)
EXTENSION_ERRORS = (400, 404, 413, *GUARDED)
LOAD_ERRORS = (*EXTENSION_ERRORS, 429, 503)  # a load that fails answers with its load error's status


def _v2_operation(operation_id: str, summary: str, responses: dict, **more) -> dict:
    return {"tags": [V2_TAG], "operationId": operation_id, "summary": summary, **more, "responses": responses}


def _optional_body(properties: dict, example: dict) -> dict:
    schema = {"type": "object", "properties": properties}
    return {"required": False, "content": {JSON: {"schema": schema, "example": example}}}


def _v2_model_paths() -> dict:
    paths = {}
    for suffix, parameters in V2_FORMS:
        base = "/v2/models/{name}" + suffix
        refs = [_ref("parameters", p) for p in parameters]
        on = "one version" if suffix else "the model's chosen version"
        key = "Version" if suffix else ""
        paths[base] = {
            "parameters": refs,
            "get": _v2_operation(
                f"v2ModelMetadata{key}",
                f"Inputs, outputs and platform of {on}",
                {**_ok("The model metadata.", _schema("V2ModelMetadata")), **_errors(V2_ERRORS)},
            ),
        }
        paths[base + "/ready"] = {
            "parameters": refs,
            "get": _v2_operation(
                f"v2ModelReady{key}",
                f"Whether {on} is AVAILABLE",
                {
                    **_ok("Ready.", {"type": "object", "properties": {"name": {"type": "string"}, "ready": {}}}),
                    **_errors(V2_ERRORS),
                },
                description="200 when ready; 400 when the version is not AVAILABLE; 404 for an unknown model.",
            ),
        }
        paths[base + "/infer"] = {
            "parameters": refs,
            "post": _v2_operation(
                f"v2Infer{key}",
                f"Inference with {on}",
                {
                    "200": {
                        "description": "The outputs as JSON; with binary outputs, the JSON "
                        "(`Inference-Header-Content-Length` bytes) then their raw data.",
                        "content": {
                            JSON: {"schema": _schema("V2InferResponse")},
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    **_errors(INFERENCE_ERRORS),
                },
                description="Runs the `serving_default` signature (another through the `signature_name` "
                "parameter). With Triton's binary tensor data extension, the body is "
                "`Inference-Header-Content-Length` bytes of JSON followed by the inputs' raw data.",
                requestBody=_json_body("V2InferRequest", DIGITS_V2_REQUEST),
            ),
        }
        paths[base + "/config"] = {
            "parameters": refs,
            "get": _v2_operation(
                f"v2ModelConfig{key}",
                f"Triton's model configuration of {on}",
                {**_ok("The configuration.", _schema("V2ModelConfig")), **_errors(V2_ERRORS)},
            ),
        }
        paths[base + "/stats"] = {
            "parameters": refs,
            "get": _v2_operation(
                f"v2ModelStatistics{key}",
                f"Inference statistics of {on}" if suffix else "Inference statistics of every version of a model",
                {**_ok("Triton's statistics.", _schema("V2Statistics")), **_errors(EXTENSION_ERRORS)},
            ),
        }
    return paths


def _v2_paths() -> dict:
    name = [_ref("parameters", "V2ModelName")]
    change = "Needs the control token when `--require_token_for_control` is set."
    return {
        "/v2/health/live": {
            "get": _v2_operation(
                "v2ServerLive",
                "Liveness",
                {**_ok("Live.", {"type": "object", "properties": {"live": {"type": "boolean"}}}), **_errors(GUARDED)},
            )
        },
        "/v2/health/ready": {
            "get": _v2_operation(
                "v2ServerReady",
                "Readiness: 200 once the first load of every model has finished, 400 before",
                {
                    **_ok("Ready.", {"type": "object", "properties": {"ready": {"type": "boolean"}}}),
                    **_errors((400, *GUARDED)),
                },
            )
        },
        "/v2": {
            "get": _v2_operation(
                "v2ServerMetadata",
                "Server name, version and the extensions served",
                {**_ok("The server metadata.", _schema("V2ServerMetadata")), **_errors(GUARDED)},
            )
        },
        **_v2_model_paths(),
        "/v2/models/stats": {
            "get": _v2_operation(
                "v2Statistics",
                "Inference statistics of every model",
                {**_ok("Triton's statistics.", _schema("V2Statistics")), **_errors(EXTENSION_ERRORS)},
            )
        },
        "/v2/repository/index": {
            "post": _v2_operation(
                "v2RepositoryIndex",
                "Every version of every model, and its state",
                {**_ok("The index.", _schema("V2RepositoryIndex")), **_errors(EXTENSION_ERRORS)},
                requestBody=_optional_body({"ready": {"type": "boolean"}}, {"ready": True}),
            )
        },
        # unload before load: the docs page's example (and a test sending every example) leaves it loaded
        "/v2/repository/models/{name}/unload": {
            "parameters": name,
            "post": _v2_operation(
                "v2UnloadModel",
                "Unload every version of a model",
                {**_ok("Unloaded.", {"type": "object"}), **_errors(EXTENSION_ERRORS)},
                description=change,
                requestBody=_optional_body({"parameters": {"type": "object"}}, {}),
            ),
        },
        "/v2/repository/models/{name}/load": {
            "parameters": name,
            "post": _v2_operation(
                "v2LoadModel",
                "Load a model (reload it when loaded)",
                {**_ok("Loaded.", {"type": "object"}), **_errors(LOAD_ERRORS)},
                description=change,
                requestBody=_optional_body({"parameters": {"type": "object"}}, {}),
            ),
        },
    }


def _server_paths(metrics_path: str | None) -> dict:
    def get(operation_id: str, summary: str, responses: dict) -> dict:
        return {
            "get": {
                "tags": [SERVER_TAG],
                "operationId": operation_id,
                "summary": summary,
                "responses": {**responses, **_errors(GUARDED)},
            }
        }

    health = {"content": {JSON: {"schema": _schema("Health")}}}
    return {
        "/health": get(
            "health",
            "Readiness, the device, and every model's versions",
            {
                "200": {"description": "Ready, or degraded (some model has no AVAILABLE version).", **health},
                "503": {"description": "Still loading.", **health},
            },
        ),
        **(
            {
                metrics_path: get(
                    "metrics",
                    "Metrics in Prometheus' text format",
                    _ok("The metrics.", {"type": "string"}, "text/plain"),
                )
            }
            if metrics_path
            else {}
        ),
        "/openapi.json": get("openapi", "This document", _ok("OpenAPI 3.1.", {"type": "object"})),
        "/docs": get(
            "docs",
            "The API reference page, with a form to try each endpoint",
            _ok("An HTML page.", {"type": "string"}, "text/html"),
        ),
        "/": get(
            "index",
            "A page saying what is served and how to call it (for `Accept: text/html`), else liveness as JSON",
            {
                "200": {
                    "description": 'The page, or `{"status": "alive", ...}` (what KServe\'s v1 client reads).',
                    "content": {
                        "text/html": {"schema": {"type": "string"}},
                        JSON: {"schema": {"type": "object", "properties": {"status": {"const": "alive"}}}},
                    },
                }
            },
        ),
    }


def openapi_document(metrics_path: str | None = METRICS_PATH) -> dict:
    """The OpenAPI 3.1 document of every route, as JSON-ready Python data (the metrics at ``metrics_path``)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "appliance",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": TFS_TAG, "description": "TensorFlow Serving's REST API, wire-compatible."},
            {"name": APPLIANCE_TAG, "description": "The simple predict endpoint and the control API."},
            {"name": V2_TAG, "description": "The Open Inference Protocol (KServe v2), as Triton serves it."},
            {"name": SERVER_TAG, "description": "Health, metrics and documentation."},
        ],
        "paths": {**_tf_serving_paths(), **_v2_paths(), **_appliance_paths(), **_server_paths(metrics_path)},
        "components": {
            "schemas": SCHEMAS,
            "parameters": PARAMETERS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Needed when the appliance listens beyond loopback or was given a token; the "
                    "token is in the appliance's config folder (file `token`).",
                }
            },
        },
        "security": [{}, {"bearerToken": []}],
    }


@functools.cache
def _document_json(metrics_path: str | None) -> str:
    return json.dumps(openapi_document(metrics_path), indent=1)


@functools.cache
def _docs_html() -> bytes:
    return resources.files(__package__).joinpath("static", "docs.html").read_bytes()


def openapi_json(metrics_path: str | None = METRICS_PATH) -> bottle.HTTPResponse:
    return json_response(_document_json(metrics_path))


def docs_page() -> bottle.HTTPResponse:
    return bottle.HTTPResponse(body=_docs_html(), status=200, headers={"Content-Type": HTML_TYPE})
