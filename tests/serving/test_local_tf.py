"""The local TensorFlow runtime on real SavedModels: device selection, loading, predict/classify/regress."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from appliance.errors import Code, FailedPrecondition, InvalidArgument, ServingError
from appliance.serving.runtime import local_tf
from appliance.serving.runtime.local_tf import LocalTFRuntime, select_device

from ..conftest import MODELS
from ..faulty_models import NEGATIVE_INPUT_MESSAGE, CheckedSqrt


@pytest.fixture(scope="module")
def runtime():
    return LocalTFRuntime(device="auto")


def test_auto_and_cpu_select_the_cpu_on_a_machine_without_gpu():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU; the CPU-only behaviour is checked where there is none (CI)")
    for requested in ("auto", "cpu"):
        device = select_device(requested)
        assert device.type == "CPU" and device.name and device.memory_growth is None
    with pytest.raises(FailedPrecondition, match="no GPU"):
        select_device("gpu")
    with pytest.raises(InvalidArgument):
        select_device("tpu")


def test_gpu_is_chosen_with_memory_growth(monkeypatch):
    """FAKE GPU: no GPU exists on the CI machines, so TensorFlow's device queries are replaced here.

    What is checked is the appliance's own logic: with a GPU present, auto picks it,
    turns memory growth on for every GPU and reports the GPU's name.
    """
    gpus = [
        tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU"),
        tf.config.PhysicalDevice("/physical_device:GPU:1", "GPU"),
    ]
    growth = []
    monkeypatch.setattr(local_tf.tf.config, "list_physical_devices", lambda kind=None: gpus)
    monkeypatch.setattr(local_tf.tf.config.experimental, "set_memory_growth", lambda d, on: growth.append((d, on)))
    monkeypatch.setattr(local_tf.tf.config.experimental, "get_device_details", lambda d: {"device_name": "NVIDIA H200"})
    device = select_device("auto")
    assert (device.type, device.name, device.memory_growth, device.count) == ("GPU", "NVIDIA H200", True, 2)
    assert growth == [(gpus[0], True), (gpus[1], True)]
    assert "memory growth on" in device.describe()


def test_load_errors_are_serving_errors(runtime, tmp_path):
    with pytest.raises(ServingError) as missing:
        runtime.load(tmp_path)
    assert missing.value.code is Code.NOT_FOUND and str(tmp_path) in missing.value.message
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    with pytest.raises(ServingError) as corrupt:
        runtime.load(tmp_path)
    assert corrupt.value.code is not Code.OK and str(tmp_path) in corrupt.value.message


def test_predict_classify_regress_on_tf_serving_models(runtime, tfs_testdata):
    servable = runtime.load(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123")
    outputs = servable.predict("", {"x": np.array([[1.0], [4.0]], np.float32)})
    np.testing.assert_array_equal(outputs["y"], [[2.5], [4.0]])
    assert servable.classify("classify_x_to_y", None, [{"x": ("float", [2.0])}]) == [[("", 3.0)]]
    context = {"x": ("float", [10.0])}
    assert servable.regress("regress_x_to_y2", context, [{}, {"x": ("float", [0.0])}]) == [8.0, 3.0]
    assert servable.signatures["serving_default"].inputs["x"].dtype == "DT_FLOAT"
    assert servable.signatures["serving_default"].inputs["x"].shape == (-1, 1)
    servable.close()


def test_predict_errors(runtime, tfs_testdata):
    servable = runtime.load(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123")
    with pytest.raises(FailedPrecondition, match='Serving signature key "nope" not found') as unknown:
        servable.predict("nope", {"x": np.zeros((1, 1), np.float32)})
    assert unknown.value.message.endswith(
        "classify_x_to_y, regress_x2_to_y3, regress_x_to_y, regress_x_to_y2, serving_default."
    )
    with pytest.raises(InvalidArgument, match="input size does not match signature: 2!=1"):
        servable.predict("", {"x": np.zeros((1, 1), np.float32), "z": np.zeros(1, np.float32)})
    with pytest.raises(InvalidArgument, match="input tensor alias not found in signature: z"):
        servable.predict("", {"z": np.zeros(1, np.float32)})
    with pytest.raises(ServingError) as mismatch:
        servable.predict("", {"x": np.zeros((1, 1), np.int32)})
    assert mismatch.value.code is Code.INVALID_ARGUMENT
    with pytest.raises(ServingError) as garbage:
        servable.classify("classify_x_to_y", None, [{"y": ("bytes", [b"no x feature"])}])
    assert garbage.value.code is Code.INVALID_ARGUMENT
    with pytest.raises(
        InvalidArgument, match=r"No signature was found with the name: nope\. Signatures: classify_x_to_y,"
    ):
        servable.regress("nope", None, [{}])
    servable.close()


@pytest.mark.parametrize(
    "pixels, sent",
    [
        (np.zeros((1, 3), np.float32), "float32 [1, 3]"),  # a known dimension
        (np.zeros(64, np.float32), "float32 [64]"),  # the rank
        (np.zeros((2, 1, 64), np.float32), "float32 [2, 1, 64]"),
        (np.zeros((1, 64), np.float64), "float64 [1, 64]"),  # the dtype
        (np.zeros((1, 64), np.int32), "int32 [1, 64]"),
        (np.full((1, 64), b"7", dtype=object), "string [1, 64]"),
    ],
)
def test_an_input_the_model_cannot_take_is_named_with_the_dtype_and_shape_expected_and_sent(runtime, pixels, sent):
    servable = runtime.load(MODELS / "digits" / "2")
    try:
        with pytest.raises(InvalidArgument) as refused:
            servable.predict("serving_default", {"pixels": pixels})
        assert refused.value.message == f'input "pixels" expects float32 [-1, 64]; got {sent}'
        assert servable.predict("serving_default", {"pixels": np.zeros((2, 64), np.float32)})["class"].shape == (2,)
    finally:
        servable.close()


def test_inputs_off_the_signature_that_the_graph_takes_are_answered_as_tf_serving_does(runtime, tfs_testdata):
    # TF Serving's own tests call these models so: x [3] for a [-1, 1] signature, x [3] for a scalar one.
    half_plus_two = runtime.load(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123")
    half_plus_three = runtime.load(tfs_testdata / "saved_model_half_plus_three" / "00000123")
    try:
        x = np.array([2.0, 3.0, 4.0], np.float32)
        assert half_plus_two.predict("", {"x": x})["y"].tolist() == [3.0, 3.5, 4.0]
        assert half_plus_three.predict("", {"x": x})["y"].tolist() == [4.0, 4.5, 5.0]
        with pytest.raises(InvalidArgument, match=r'input "x" expects float32 \[-1, 1\]; got int64 \[3\]'):
            half_plus_two.predict("", {"x": x.astype(np.int64)})
    finally:
        half_plus_two.close()
        half_plus_three.close()


def test_tensorflow_messages_reach_the_client_as_their_first_line_without_graph_node_names(runtime, tmp_path):
    checked = CheckedSqrt()
    tf.saved_model.save(checked, str(tmp_path / "1"), signatures={"serving_default": checked.serve})
    negative = np.array([4.0, -1.0], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError) as raw:  # what TensorFlow itself says
        tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"](x=tf.constant(negative))
    assert "{{node " in raw.value.message and "\n" in raw.value.message
    servable = runtime.load(tmp_path / "1")
    try:
        with pytest.raises(ServingError) as failed:
            servable.predict("", {"x": negative})  # fits the signature: only the graph can refuse it
        message = failed.value.message
        assert failed.value.code is Code.INVALID_ARGUMENT
        assert message.startswith("assertion failed: ") and NEGATIVE_INPUT_MESSAGE in message
        assert "\n" not in message and "{{" not in message and "[[" not in message and "node" not in message
    finally:
        servable.close()


def test_graph_node_names_are_cut_from_a_one_line_message():
    first = "Matrix size-incompatible: In[0]: [1,3], In[1]: [64,128]"  # the example
    assert local_tf._first_line(first + " [[{{function_node __inference_serve_309}}{{node MatMul}}]]") == first
    assert local_tf._first_line(first + "\n\t [[{{node MatMul}}]]\n\nOriginal stack trace for ...") == first


def test_tf2_model_uses_signature_defaults_and_lists_the_init_op(runtime, tfs_testdata):
    servable = runtime.load(tfs_testdata / "saved_model_half_plus_two_tf2_cpu" / "00000123")
    assert servable.predict("", {})["y"].tolist() == [2.0]  # x defaults to [0.0]
    metadata = servable.signature_defs_json()
    assert "__saved_model_init_op" in metadata
    assert metadata["serving_default"]["defaults"]["x"]["float_val"] == [0.0]
    servable.close()


def test_a_valid_request_shape_is_planned_once_and_errors_are_never_cached(runtime, tfs_testdata, monkeypatch):
    monkeypatch.setattr(local_tf, "_PREDICT_PLANS_KEPT", 3)
    servable = runtime.load(tfs_testdata / "saved_model_half_plus_two_tf2_cpu" / "00000123")
    for _ in range(2):  # the second round runs from the plans the first one kept
        assert servable.predict("", {})["y"].tolist() == [2.0]  # x from the signature's default
        assert servable.predict("", {"x": np.array([4.0], np.float32)})["y"].tolist() == [4.0]
        assert servable.predict("serving_default", {"x": np.array([2.0], np.float32)}, ("y",))["y"].tolist() == [3.0]
        assert servable.predict(None, {"x": np.array([6.0], np.float32)})["y"].tolist() == [5.0]  # beyond the cap
        with pytest.raises(InvalidArgument, match="input tensor alias not found in signature: z"):
            servable.predict("", {"z": np.zeros(1, np.float32)})
        with pytest.raises(InvalidArgument, match="output tensor alias not found in signature: w"):
            servable.predict("", {"x": np.array([4.0], np.float32)}, ("w",))
    assert len(servable._predict_plans) == 3
    servable.close()


def test_tf1_only_model_loads(runtime, tfs_testdata):
    servable = runtime.load(tfs_testdata / "saved_model_half_plus_three" / "00000123")
    assert servable.predict("", {"x": np.array([1.0, 2.0, 5.0], np.float32)})["y"].tolist() == [3.5, 4.0, 5.5]
    servable.close()


def test_bundled_image_signature_accepts_encoded_bytes(runtime):
    servable = runtime.load(MODELS / "digits" / "2")
    blank = tf.io.encode_png(tf.zeros((16, 16, 1), tf.uint8)).numpy()
    outputs = servable.predict("image", {"image_bytes": np.array([blank, blank], dtype=object)})
    assert outputs["probabilities"].shape == (2, 10)
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ServingError) as not_an_image:
        servable.predict("image", {"image_bytes": np.array([b"not an image"], dtype=object)})
    assert not_an_image.value.code is Code.INVALID_ARGUMENT
    servable.close()


class _Steps(tf.Module):
    """A thousand small element-wise steps, straight or in a graph loop: milliseconds of the executor's own work."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def straight(self, x):
        for _ in range(1000):
            x = x * 0.5 + 1.0
        return {"y": x}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def looped(self, x):
        _, y = tf.while_loop(lambda i, x: i < 1000, lambda i, x: (i + 1, x * 0.5 + 1.0), (0, x))
        return {"y": y}


@pytest.fixture(scope="module")
def step_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("steps")
    module = _Steps()
    for name in ("straight", "looped"):
        tf.saved_model.save(module, str(root / name / "1"), signatures={"serving_default": getattr(module, name)})
    return root


def _caller_cpu_share(servable, rows: np.ndarray) -> tuple[float, np.ndarray]:
    """The share of one call's wall time that the calling thread spent on the CPU, and the call's output."""
    servable.predict("serving_default", {"x": rows})  # the callable is made on the first call
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(3):
        outputs = servable.predict("serving_default", {"x": rows})
    return (time.thread_time() - cpu) / (time.perf_counter() - wall), outputs["y"]


def test_one_row_calls_of_loop_free_graphs_run_in_the_calling_thread_and_the_others_on_the_pool(step_models):
    # The steps are too small to be split across threads: the thread running the graph does all the work, so the
    # calling thread's own CPU time shows where the graph ran (~1.0 of the call's time when there, 0.05-0.25 of
    # setting the call up when on the pool).
    runtime = LocalTFRuntime("cpu", run_timeout_ms=60_000, warmup=False)
    straight = runtime.load(step_models / "straight" / "1")
    looped = runtime.load(step_models / "looped" / "1")
    rows = np.array([3.0], np.float32)
    try:
        assert straight.runs_in_caller_thread("serving_default")
        assert not looped.runs_in_caller_thread("serving_default")
        straight_share, straight_y = _caller_cpu_share(straight, rows)
        looped_share, looped_y = _caller_cpu_share(looped, rows)
        assert straight_share > 0.8, "the loop-free graph should have run in the calling thread"
        assert looped_share < 0.5, "the graph loop should have run on TensorFlow's inter-op pool"
        np.testing.assert_allclose(straight_y, looped_y, rtol=1e-5)
        batch_share, _ = _caller_cpu_share(straight, np.ones(8, np.float32))
        assert batch_share < 0.5, f"a call of several rows should have run on the pool (share {batch_share:.2f})"
    finally:
        straight.close()
        looped.close()


def test_an_inter_op_pool_size_puts_every_graph_on_the_pool(step_models):
    runtime = LocalTFRuntime("cpu", inter_op_threads=2, warmup=False)
    straight = runtime.load(step_models / "straight" / "1")
    try:
        assert not straight.runs_in_caller_thread("serving_default")
        share, _ = _caller_cpu_share(straight, np.ones(1, np.float32))
        assert share < 0.5
    finally:
        straight.close()


def test_signatures_of_the_bundled_and_tf_serving_models_run_where_their_ops_allow(runtime, tfs_testdata):
    half_plus_two = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    for path in (MODELS / "digits" / "2", MODELS / "iris" / "1", half_plus_two):
        servable = runtime.load(path)
        try:
            in_caller = {name for name in servable.signatures if servable.runs_in_caller_thread(name)}
            # digits' "image" decodes each image in a graph loop (map_fn): the only signature on the pool
            expected = set(servable.signatures) - {"image"}
            assert in_caller == expected, path
        finally:
            servable.close()


def test_inputs_and_outputs_are_listed_by_alias_so_responses_keep_one_order(runtime, tfs_testdata):
    # The SignatureDef's protobuf maps iterate in an order that changes from process to process.
    half_plus_two = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    for path in (MODELS / "digits" / "2", MODELS / "iris" / "1", half_plus_two):
        servable = runtime.load(path)
        try:
            for signature in servable.signatures.values():
                assert list(signature.inputs) == sorted(signature.inputs), (path, signature.name)
                assert list(signature.outputs) == sorted(signature.outputs), (path, signature.name)
            if path.parent.name == "digits":
                outputs = servable.predict("", {"pixels": np.zeros((1, 64), np.float32)})
                assert list(outputs) == ["class", "probabilities"]
        finally:
            servable.close()


# -- TF Serving's flags for the sessions and the loader (docs/tfserving-flags.md) ------------------------------------


def _two_meta_graphs(path):
    """A TF1 SavedModel with two MetaGraphs: tags {serve} doubles x, tags {serve, gpu} triples it."""
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        doubled, tripled = tf.multiply(x, 2.0, name="doubled"), tf.multiply(x, 3.0, name="tripled")

        def signatures(y):
            return {"serving_default": tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})}

        builder = tf.compat.v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures(doubled))
        builder.add_meta_graph(["serve", "gpu"], signature_def_map=signatures(tripled))
        builder.save()


def test_saved_model_tags_choose_the_meta_graph_and_a_missing_tag_set_fails_the_load(tmp_path):
    _two_meta_graphs(tmp_path / "1")
    x = np.array([1.0, -2.5], np.float32)
    for tags, factor in ((("serve",), 2), (("serve", "gpu"), 3), (("gpu", "serve"), 3)):
        servable = LocalTFRuntime("cpu", saved_model_tags=tags).load(tmp_path / "1")
        np.testing.assert_array_equal(servable.predict("serving_default", {"x": x})["y"], x * factor)
        servable.close()
    with pytest.raises(ServingError) as missing:
        LocalTFRuntime("cpu", saved_model_tags=("serve", "tpu")).load(tmp_path / "1")
    assert missing.value.code is Code.NOT_FOUND
    message = missing.value.message
    assert "Could not find meta graph def matching supplied tags: { serve tpu }" in message
    assert str(tmp_path / "1") in message and "[serve], [gpu, serve]" in message


def test_a_session_config_file_is_the_base_the_thread_flags_override(tmp_path, tfs_testdata):
    config = tmp_path / "session.config"
    config.write_text(
        "intra_op_parallelism_threads: 2 inter_op_parallelism_threads: 3\n"
        "graph_options { optimizer_options { opt_level: L0 } }\n"
    )
    from_file = LocalTFRuntime("cpu", session_config_file=config)
    assert from_file.session_config.intra_op_parallelism_threads == 2
    assert from_file.session_config.inter_op_parallelism_threads == 3
    assert from_file.session_config.graph_options.optimizer_options.opt_level == -1  # L0
    assert from_file.session_config.device_count["GPU"] == 0
    flags_win = LocalTFRuntime("cpu", 4, 0, session_config_file=config).session_config
    assert (flags_win.intra_op_parallelism_threads, flags_win.inter_op_parallelism_threads) == (4, 3)
    # The file's inter-op pool is used: no call runs in the calling thread, as with the flag's N > 0.
    path = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    on_pool, default = from_file.load(path), LocalTFRuntime("cpu").load(path)
    try:
        assert not on_pool.runs_in_caller_thread("serving_default")
        assert default.runs_in_caller_thread("serving_default")
        x = np.array([[1.0], [3.0]], np.float32)
        np.testing.assert_array_equal(on_pool.predict("", {"x": x})["y"], 0.5 * x + 2)
    finally:
        on_pool.close()
        default.close()
    config.write_text("intra_op_parallelism_threads: many")
    with pytest.raises(InvalidArgument, match="is not a valid ConfigProto"):
        LocalTFRuntime("cpu", session_config_file=config)
    with pytest.raises(InvalidArgument, match="cannot read TensorFlow session config file"):
        LocalTFRuntime("cpu", session_config_file=tmp_path / "none.config")


def test_mixed_precision_bfloat16_turns_the_onednn_rewrite_on(tfs_testdata, caplog):
    """This machine's CPU may lack bfloat16: TensorFlow then skips the rewrite, and the answers stay float32's."""
    from tensorflow.core.protobuf import rewriter_config_pb2

    on = LocalTFRuntime("cpu", mixed_precision="bfloat16")
    rewrites = on.session_config.graph_options.rewrite_options
    assert rewrites.auto_mixed_precision_onednn_bfloat16 == rewriter_config_pb2.RewriterConfig.ON
    servable = on.load(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123")
    x = np.array([[1.0], [3.0]], np.float32)
    np.testing.assert_allclose(servable.predict("", {"x": x})["y"], 0.5 * x + 2, rtol=1e-2)
    servable.close()
    with caplog.at_level("WARNING"):
        unknown = LocalTFRuntime("cpu", mixed_precision="float16").session_config.graph_options.rewrite_options
    assert unknown.auto_mixed_precision_onednn_bfloat16 == rewriter_config_pb2.RewriterConfig.DEFAULT
    assert "float16 auto mixed precision is not supported. Valid option: bfloat16" in caplog.text


def test_gpu_memory_fraction_reserves_that_share_of_each_gpu_instead_of_memory_growth(monkeypatch, caplog):
    """FAKE GPU: no GPU exists on the CI machines, so TensorFlow's device queries are replaced here.

    What is checked is the appliance's own part: no memory growth, and the fraction in the ConfigProto of
    every session (TensorFlow's GPU allocator then takes that share of each GPU, as in TF Serving).
    """
    gpus = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
    growth = []
    monkeypatch.setattr(local_tf.tf.config, "list_physical_devices", lambda kind=None: gpus)
    monkeypatch.setattr(local_tf.tf.config.experimental, "set_memory_growth", lambda d, on: growth.append((d, on)))
    monkeypatch.setattr(local_tf.tf.config.experimental, "get_device_details", lambda d: {"device_name": "NVIDIA H100"})
    with caplog.at_level("INFO"):
        runtime = LocalTFRuntime("auto", gpu_memory_fraction=0.4)
    assert runtime.device.type == "GPU" and runtime.device.memory_growth is False and growth == []
    options = runtime.session_config.gpu_options
    assert options.per_process_gpu_memory_fraction == pytest.approx(0.4) and not options.allow_growth
    assert "GPU" not in runtime.session_config.device_count
    assert "the models may take 40% of each GPU" in caplog.text
    growing = LocalTFRuntime("auto")
    assert growing.session_config.gpu_options.allow_growth and growth == [(gpus[0], True)]
    assert growing.session_config.gpu_options.per_process_gpu_memory_fraction == 0


def test_gpu_memory_fraction_has_no_effect_on_the_cpu(caplog):
    with caplog.at_level("INFO"):
        runtime = LocalTFRuntime("cpu", gpu_memory_fraction=0.4)
    assert runtime.session_config.gpu_options.per_process_gpu_memory_fraction == 0
    assert runtime.session_config.device_count["GPU"] == 0
    assert "--per_process_gpu_memory_fraction has no effect: the models run on the CPU" in caplog.text


def test_signature_method_name_check(tfs_testdata):
    """TF Serving's TF2 test model has only predict signatures: checked, classify and regress refuse them."""
    tf2 = tfs_testdata / "saved_model_half_plus_two_tf2_cpu" / "00000123"
    unchecked, checked = LocalTFRuntime("cpu").load(tf2), LocalTFRuntime("cpu", check_method_names=True).load(tf2)
    example = [{"x": ("float", [4.0])}]
    try:
        assert unchecked.regress("regress_x_to_y", None, example) == [0.5 * 4.0 + 2]
        assert unchecked.classify("classify_x_to_y", None, example) == [[("", 0.5 * 4.0 + 2)]]
        with pytest.raises(InvalidArgument) as regress:
            checked.regress("regress_x_to_y", None, example)
        assert regress.value.message == (
            "Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/predict"
        )
        with pytest.raises(InvalidArgument, match="Expected classification signature method_name to be"):
            checked.classify("classify_x_to_y", None, example)
        x = np.array([1.0], np.float32)
        np.testing.assert_array_equal(checked.predict("serving_default", {"x": x})["y"], 0.5 * x + 2)
        with pytest.raises(ServingError) as init_op:  # method_name "": not one of TF Serving's three
            checked.predict("__saved_model_init_op", {})
        assert init_op.value.code is Code.INTERNAL and init_op.value.message.endswith("Was: ")
    finally:
        unchecked.close()
        checked.close()
    tf1 = LocalTFRuntime("cpu", check_method_names=True).load(
        tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    )
    assert tf1.regress("regress_x_to_y", None, example) == [0.5 * 4.0 + 2]  # its method_name is regress
    tf1.close()


class _Scaled(tf.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def scale(self, x):
        return {"y": x * self.factor}


def test_prefer_tflite_model_serves_the_model_tflite_of_a_saved_model_folder(tmp_path):
    doubles, triples = _Scaled(2.0), _Scaled(3.0)
    version = tmp_path / "1"
    tf.saved_model.save(doubles, str(version), signatures={"serving_default": doubles.scale})
    tf.saved_model.save(triples, str(tmp_path / "triples"), signatures={"serving_default": triples.scale})
    converted = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "triples")).convert()
    (version / "model.tflite").write_bytes(converted)
    x = np.array([1.0, 4.0], np.float32)
    for prefer, factor in ((False, 2), (True, 3)):
        servable = LocalTFRuntime("cpu", prefer_tflite=prefer).load(version)
        np.testing.assert_allclose(servable.predict("serving_default", {"x": x})["y"], x * factor)
        servable.close()
    plain = tmp_path / "plain"
    tf.saved_model.save(doubles, str(plain), signatures={"serving_default": doubles.scale})
    servable = LocalTFRuntime("cpu", prefer_tflite=True).load(plain)  # no model.tflite: the SavedModel
    np.testing.assert_allclose(servable.predict("serving_default", {"x": x})["y"], x * 2)
    servable.close()
