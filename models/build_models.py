"""Build the example SavedModels bundled with the appliance.

Trains small scikit-learn estimators on the datasets that ship with
scikit-learn (no downloads), copies their weights into ``tf.Variable``s of a
``tf.Module`` that implements only the forward pass, and exports them in
TF Serving layout (``<out>/<name>/<version>/saved_model.pb``):

    digits/1  multinomial logistic regression, 8x8 digit pixels -> 10 classes
    digits/2  MLP 64 -> 128 (relu) -> 10
    iris/1    logistic regression; petal width regressed on petal length
    iris/2    MLP 4 -> 16 (relu) -> 3; petal width regressed on
              sepal length, sepal width and petal length

Signatures:

    digits  serving_default  pixels float32 [None, 64]
                             -> probabilities float32 [None, 10], class int64 [None]
            classify         inputs string [None] (tf.Example, float feature
                             "pixels" of length 64)
                             -> classes string [None, 10], scores float32 [None, 10]
            image            image_bytes string [None] (PNG/JPEG/GIF/BMP, any
                             size, either polarity) -> same outputs as serving_default
    iris    serving_default  features float32 [None, 4]
                             -> probabilities float32 [None, 3], class int64 [None]
            classify         inputs string [None] (tf.Example, float features
                             sepal_length, sepal_width, petal_length, petal_width)
                             -> classes string [None, 3], scores float32 [None, 3]
            regress          inputs string [None] (tf.Example, float features
                             sepal_length, sepal_width, petal_length)
                             -> outputs float32 [None] (petal width, cm)

Each version also ships what TF Serving reads beside a SavedModel:
``assets.extra/tf_serving_warmup_requests`` (PredictionLog records: one
request per signature, taken from the held-out split, run before the version
is AVAILABLE) and ``batching_params.pbtxt`` (its adaptive batching settings).

Training is deterministic: fixed seeds, a fixed stratified train/test split
and single-threaded BLAS while fitting.  Each version is exported to a
temporary directory next to its destination and then renamed into place,
replacing any previous export.

Beside the versions, ``<name>/samples/`` holds sample inputs (see :func:`write_samples`): one request body
per signature (``<signature>.json``, what the start page and the README's examples send) and, for digits,
held-out digits as PNGs named by their digit, each checked to be classified right by every version.

Usage:

    python models/build_models.py [--out DIR] [--samples-only]

DIR defaults to the folder this script lives in; ``--samples-only`` rewrites the samples of the exported
models in DIR without training.
"""

import argparse
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from tensorflow_serving.apis import prediction_log_pb2
from threadpoolctl import threadpool_limits

SEED = 0
TEST_SIZE = 0.3

DIGIT_LABELS = tuple(str(d) for d in range(10))
DIGIT_PIXELS = 64
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_CLASSES = ("setosa", "versicolor", "virginica")
REGRESS_FEATURES = ("sepal_length", "sepal_width", "petal_length")
REGRESS_TARGET = "petal_width"


@dataclass(frozen=True)
class Split:
    """A fixed, stratified train/test split of one dataset."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def _split(x, y):
    parts = train_test_split(x.astype(np.float32), y, test_size=TEST_SIZE, random_state=SEED, stratify=y)
    return Split(*parts)


def digits_split():
    """load_digits: 64 pixel values in 0..16 per row, labels 0..9."""
    data = load_digits()
    return _split(data.data, data.target)


def iris_split():
    """load_iris: columns in IRIS_FEATURES order (cm), labels index IRIS_CLASSES."""
    data = load_iris()
    return _split(data.data, data.target)


# --- training (scikit-learn) -------------------------------------------------
# A classifier is exported as a list of dense layers [(weights, bias), ...]
# with relu between layers and softmax after the last one.


def fit_logistic(split):
    """Multinomial logistic regression on the raw features: one dense layer."""
    model = LogisticRegression(max_iter=1000, random_state=SEED)
    with threadpool_limits(1):
        model.fit(split.x_train, split.y_train)
    return [(model.coef_.T, model.intercept_)]


def fit_mlp(split, hidden, max_iter):
    """MLP on standardized features; the standardization is folded into layer 1."""
    scaler = StandardScaler().fit(split.x_train)
    model = MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=SEED)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # never export an unconverged net
        model.fit(scaler.transform(split.x_train), split.y_train)
    layers = list(zip(model.coefs_, model.intercepts_))
    return [fold_standardization(*layers[0], scaler), *layers[1:]]


def fold_standardization(weights, bias, scaler):
    """Rewrite ((x - mean) / scale) @ W + b as x @ W' + b'."""
    scaled = weights / scaler.scale_[:, None]
    return scaled, bias - scaler.mean_ @ scaled


def fit_petal_width(split, features):
    """Linear regression of petal width on the named iris features."""
    columns = [IRIS_FEATURES.index(name) for name in features]
    target = split.x_train[:, IRIS_FEATURES.index(REGRESS_TARGET)]
    model = LinearRegression().fit(split.x_train[:, columns], target)
    return model.coef_, model.intercept_


# --- forward pass (TensorFlow) -----------------------------------------------


def _float_variables(arrays, prefix):
    return [tf.Variable(np.asarray(a, np.float32), name=f"{prefix}{i}") for i, a in enumerate(arrays)]


class Classifier(tf.Module):
    """Dense relu layers + softmax, with TF Serving style classify outputs."""

    def __init__(self, layers, labels):
        super().__init__()
        self.kernels = _float_variables([w for w, _ in layers], "kernel")
        self.biases = _float_variables([b for _, b in layers], "bias")
        self.labels = tf.constant(labels)

    def probabilities(self, x):
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            if i:
                x = tf.nn.relu(x)
            x = tf.matmul(x, kernel) + bias
        return tf.nn.softmax(x)

    def predict(self, x):
        probabilities = self.probabilities(x)
        return {"probabilities": probabilities, "class": tf.argmax(probabilities, axis=1)}

    def classify_outputs(self, x):
        classes = tf.tile(self.labels[tf.newaxis, :], [tf.shape(x)[0], 1])
        return {"classes": classes, "scores": self.probabilities(x)}


def image_to_pixels(image_bytes):
    """One encoded PNG/JPEG/GIF/BMP -> 64 load_digits-style pixels (bright ink, 0..16)."""
    # Decode to RGB (GIF cannot be decoded straight to one channel), then take
    # Rec. 601 luma; its weights sum to 1, so gray input comes back unchanged.
    rgb = tf.io.decode_image(image_bytes, channels=3, dtype=tf.float32, expand_animations=False)
    image = tf.reduce_sum(rgb * LUMA_WEIGHTS, axis=-1, keepdims=True)
    image = tf.where(tf.reduce_mean(image) > 0.5, 1.0 - image, image)  # dark ink on light paper
    small = tf.image.resize(image, [8, 8], method=tf.image.ResizeMethod.AREA)
    return tf.reshape(small * 16.0, [DIGIT_PIXELS])


class DigitsModel(Classifier):
    def __init__(self, layers):
        super().__init__(layers, DIGIT_LABELS)

    @tf.function(input_signature=[tf.TensorSpec([None, DIGIT_PIXELS], tf.float32)])
    def serve(self, pixels):
        return self.predict(pixels)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, inputs):
        spec = {"pixels": tf.io.FixedLenFeature([DIGIT_PIXELS], tf.float32)}
        return self.classify_outputs(tf.io.parse_example(inputs, spec)["pixels"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def image(self, image_bytes):
        pixel_spec = tf.TensorSpec([DIGIT_PIXELS], tf.float32)
        return self.predict(tf.map_fn(image_to_pixels, image_bytes, fn_output_signature=pixel_spec))

    def signatures(self):
        return {"serving_default": self.serve, "classify": self.classify, "image": self.image}


def _parse_columns(inputs, required, optional=()):
    """Scalar float features of serialized tf.Examples, stacked as [batch, len(required)]."""
    spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in required}
    for name in optional:
        spec[name] = tf.io.FixedLenFeature([], tf.float32, default_value=0.0)
    parsed = tf.io.parse_example(inputs, spec)
    return tf.stack([parsed[name] for name in required], axis=1)


class IrisModel(Classifier):
    def __init__(self, layers, regress_features, regress_coef, regress_intercept):
        super().__init__(layers, IRIS_CLASSES)
        self.regress_features = list(regress_features)
        self.regress_optional = [f for f in REGRESS_FEATURES if f not in regress_features]
        self.regress_coef = tf.Variable(np.asarray(regress_coef, np.float32), name="regress_coef")
        self.regress_intercept = tf.Variable(np.float32(regress_intercept), name="regress_bias")

    @tf.function(input_signature=[tf.TensorSpec([None, len(IRIS_FEATURES)], tf.float32)])
    def serve(self, features):
        return self.predict(features)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, inputs):
        return self.classify_outputs(_parse_columns(inputs, IRIS_FEATURES))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress(self, inputs):
        x = _parse_columns(inputs, self.regress_features, self.regress_optional)
        return {"outputs": tf.linalg.matvec(x, self.regress_coef) + self.regress_intercept}

    def signatures(self):
        return {"serving_default": self.serve, "classify": self.classify, "regress": self.regress}


# --- export --------------------------------------------------------------------


# Chosen with bench/run.py on a 2-core machine: greedy dispatch (no timeout) keeps a lone client as fast as
# unbatched, and one batch at a time gives the largest batches under load.
BATCHING_PARAMS = """\
max_batch_size { value: 32 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 16 }
num_batch_threads { value: 1 }
"""


def predict_log(signature, **inputs):
    """A PredictionLog replaying one predict request."""
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return log


def examples_log(kind, signature, serialized_examples):
    """A PredictionLog replaying one classify or regress request (kind: "classify" or "regress")."""
    log = prediction_log_pb2.PredictionLog()
    request = getattr(log, f"{kind}_log").request
    request.model_spec.signature_name = signature
    for serialized in serialized_examples:
        request.input.example_list.examples.add().ParseFromString(serialized)
    return log


def write_serving_extras(path, warmup_logs):
    """Write the warm-up records and the batching parameters next to the SavedModel in path."""
    extra = path / "assets.extra"
    extra.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for log in warmup_logs:
            writer.write(log.SerializeToString(deterministic=True))
    (path / "batching_params.pbtxt").write_text(BATCHING_PARAMS)


def export(model, path, warmup_logs):
    """Save model and its serving extras to path via a sibling temp dir, replacing any previous export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp creates it private
    try:
        tf.saved_model.save(model, str(staging), signatures=model.signatures())
        write_serving_extras(staging, warmup_logs)
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def accuracy(model, split):
    """Classification accuracy of the TF forward pass on the held-out split."""
    predicted = model.serve(tf.constant(split.x_test))["class"].numpy()
    return float(np.mean(predicted == split.y_test))


def petal_width_rmse(model, split):
    """RMSE (cm) of the regress signature on the held-out split."""
    columns = {name: split.x_test[:, IRIS_FEATURES.index(name)] for name in REGRESS_FEATURES}
    predicted = model.regress(tf.constant(serialize_examples(columns)))["outputs"].numpy()
    actual = split.x_test[:, IRIS_FEATURES.index(REGRESS_TARGET)]
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def serialize_examples(columns):
    """{feature: values per row} -> serialized tf.Examples, one per row."""
    rows = zip(*columns.values())
    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    name: tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(value)))
                    for name, value in zip(columns, row)
                }
            )
        ).SerializeToString()
        for row in rows
    ]


def build_digits(out_dir):
    """Export digits/1 and digits/2; returns {version: {"accuracy": ...}}."""
    split = digits_split()
    versions = {1: fit_logistic(split), 2: fit_mlp(split, hidden=(128,), max_iter=500)}
    pixels = split.x_test[:1]
    png = tf.io.encode_png(tf.cast(tf.reshape(255 - pixels * 255 / 16, [8, 8, 1]), tf.uint8)).numpy()
    warmup = [
        predict_log("serving_default", pixels=pixels),
        examples_log("classify", "classify", serialize_examples({"pixels": pixels})),
        predict_log("image", image_bytes=np.array([png], dtype=object)),
    ]
    metrics = {}
    for version, layers in versions.items():
        model = DigitsModel(layers)
        export(model, out_dir / "digits" / str(version), warmup)
        metrics[version] = {"accuracy": accuracy(model, split)}
    return metrics


def build_iris(out_dir):
    """Export iris/1 and iris/2; returns {version: {"accuracy": ..., "rmse": ...}}."""
    split = iris_split()
    versions = {
        1: (fit_logistic(split), ["petal_length"]),
        2: (fit_mlp(split, hidden=(16,), max_iter=2000), list(REGRESS_FEATURES)),
    }
    row = split.x_test[:1]
    warmup = [
        predict_log("serving_default", features=row),
        examples_log(
            "classify", "classify", serialize_examples({name: row[:, i] for i, name in enumerate(IRIS_FEATURES)})
        ),
        examples_log(
            "regress",
            "regress",
            serialize_examples({name: row[:, IRIS_FEATURES.index(name)] for name in REGRESS_FEATURES}),
        ),
    ]
    metrics = {}
    for version, (layers, regress_features) in versions.items():
        model = IrisModel(layers, regress_features, *fit_petal_width(split, regress_features))
        export(model, out_dir / "iris" / str(version), warmup)
        metrics[version] = {
            "accuracy": accuracy(model, split),
            "rmse": petal_width_rmse(model, split),
        }
    return metrics


SAMPLE_DIGITS = (0, 3, 7)
SAMPLE_SCALE = 4  # 8x8 digits upscaled to 32x32 PNGs, as a scan would be: dark ink on light paper


def digit_png(pixels):
    """64 load_digits pixels (bright ink, 0..16) -> a PNG of the digit, dark on light, upscaled SAMPLE_SCALE times."""
    grey = np.round(255 - np.reshape(pixels, (8, 8)) * 255 / 16).astype(np.uint8)
    large = np.kron(grey, np.ones((SAMPLE_SCALE, SAMPLE_SCALE), dtype=np.uint8))
    return tf.io.encode_png(large[:, :, np.newaxis]).numpy()


def _first_classified(pixels_rows, labels, digit, versions):
    """The first held-out row of ``digit`` whose PNG every loaded version classifies as ``digit``."""
    for pixels, label in zip(pixels_rows, labels):
        png = digit_png(pixels)
        if label == digit and all(
            int(v.signatures["image"](image_bytes=tf.constant([png]))["class"][0]) == digit for v in versions
        ):
            return pixels, png
    raise RuntimeError(f"no held-out {digit} is classified right by every version")


def _write_json(path, body):
    path.write_text(json.dumps(body) + "\n")


def write_samples(out_dir):
    """Write <out_dir>/digits/samples and <out_dir>/iris/samples from the held-out splits and the exported models."""
    out_dir = Path(out_dir)
    digits = digits_split()
    versions = [tf.saved_model.load(str(p)) for p in sorted((out_dir / "digits").iterdir()) if p.name.isdigit()]
    samples = out_dir / "digits" / "samples"
    samples.mkdir(exist_ok=True)
    chosen = {}
    for digit in SAMPLE_DIGITS:
        chosen[digit], png = _first_classified(digits.x_test, digits.y_test, digit, versions)
        (samples / f"{digit}.png").write_bytes(png)
    three = [float(p) for p in chosen[3]]
    _write_json(
        samples / "serving_default.json", {"instances": [[int(p) for p in chosen[3]]]}
    )  # ints read as float32, shorter
    _write_json(samples / "classify.json", {"signature_name": "classify", "examples": [{"pixels": three}]})

    iris = iris_split()
    rows = [[round(float(x), 1) for x in iris.x_test[list(iris.y_test).index(c)]] for c in range(len(IRIS_CLASSES))]
    samples = out_dir / "iris" / "samples"
    samples.mkdir(exist_ok=True)
    _write_json(samples / "serving_default.json", {"instances": rows})
    flowers = [dict(zip(IRIS_FEATURES, row)) for row in rows]
    _write_json(samples / "classify.json", {"signature_name": "classify", "examples": flowers})
    regress = [{k: v for k, v in flower.items() if k in REGRESS_FEATURES} for flower in flowers]
    _write_json(samples / "regress.json", {"signature_name": "regress", "examples": regress})


def build_all(out_dir):
    """Train and export every bundled model under out_dir; returns metrics per model."""
    np.random.seed(SEED)
    tf.random.set_seed(SEED)
    out_dir = Path(out_dir)
    metrics = {"digits": build_digits(out_dir), "iris": build_iris(out_dir)}
    write_samples(out_dir)
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="output directory (default: %(default)s)"
    )
    parser.add_argument("--samples-only", action="store_true", help="rewrite the samples only, without training")
    args = parser.parse_args(argv)
    if args.samples_only:
        write_samples(args.out)
        return
    for name, versions in build_all(args.out).items():
        for version, metrics in versions.items():
            shown = ", ".join(f"{key}={value:.4f}" for key, value in metrics.items())
            print(f"{name}/{version}: {shown}")


if __name__ == "__main__":
    main()
