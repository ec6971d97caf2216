"""Requests' inputs checked against signatures of every shape kind: what fits, and what the refusal says."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import InvalidArgument
from appliance.serving.runtime import SignatureSpec, TensorSpec


def signature(dtype: str, shape: tuple[int, ...] | None) -> SignatureSpec:
    return SignatureSpec("s", "tensorflow/serving/predict", {"x": TensorSpec("x", dtype, shape, "x:0")}, {})


@pytest.mark.parametrize(
    "dtype, shape, fitting, off",
    [
        (
            "DT_FLOAT",
            (-1, 4),
            [np.zeros((0, 4), np.float32), np.zeros((9, 4), np.float32)],
            [np.zeros((9, 5), np.float32), np.zeros(4, np.float32), np.zeros((9, 4), np.float64)],
        ),
        ("DT_FLOAT", (2, 4), [np.zeros((2, 4), np.float32)], [np.zeros((3, 4), np.float32)]),
        (
            "DT_UINT8",
            (-1, -1, -1, 3),
            [np.zeros((1, 5, 7, 3), np.uint8)],
            [np.zeros((1, 5, 7, 4), np.uint8), np.zeros((5, 7, 3), np.uint8), np.zeros((1, 5, 7, 3), np.int8)],
        ),
        ("DT_INT64", (), [np.int64(3), np.array(3)], [np.zeros(1, np.int64), np.int32(3)]),
        ("DT_FLOAT", None, [np.zeros((1, 2, 3), np.float32), np.float32(1)], [np.zeros(3, np.float16)]),
        (
            "DT_STRING",
            (-1,),
            [np.array([b"a"], object), np.array([b"a"]), np.array(["a"])],
            [np.zeros(1, np.float32), np.array([[b"a"]], object)],
        ),
        ("DT_BFLOAT16", (-1,), [np.zeros(2, np.float32)], [np.zeros((2, 2), np.float32)]),  # no numpy dtype: shape only
    ],
)
def test_inputs_fit_the_signatures_dtype_rank_and_known_dimensions(dtype, shape, fitting, off):
    check = signature(dtype, shape).input_check
    for array in fitting:
        assert check.fits({"x": array}) and check.mismatch({"x": array}) is None, (array.dtype, array.shape)
        check.check({"x": array})
    for array in off:
        assert not check.fits({"x": array}), (array.dtype, array.shape)
        with pytest.raises(InvalidArgument) as refused:
            check.check({"x": array})
        assert refused.value.message == check.mismatch({"x": array})
        assert refused.value.message.startswith('input "x" expects ')


def test_the_refusal_writes_the_shapes_as_the_signature_and_the_request_have_them():
    check = signature("DT_FLOAT", (-1, 64)).input_check
    assert (
        check.mismatch({"x": np.zeros((1, 3), np.float32)}) == 'input "x" expects float32 [-1, 64]; got float32 [1, 3]'
    )
    assert check.mismatch({"x": np.array([b"7"], object)}) == 'input "x" expects float32 [-1, 64]; got string [1]'
    assert signature("DT_STRING", None).input_check.mismatch({"x": np.float64(1)}) == (
        'input "x" expects string of any shape; got float64 []'
    )
    assert check.expected == 'input "x" expects float32 [-1, 64]'


def test_names_are_checked_in_tf_servings_words_and_unknown_aliases_never_fit():
    check = signature("DT_FLOAT", (-1,)).input_check
    with pytest.raises(InvalidArgument, match="input tensor alias not found in signature: y"):
        check.check({"y": np.zeros(1, np.float32)})
    with pytest.raises(InvalidArgument, match="input size does not match signature: 0!=1"):
        check.check({})
    assert not check.fits({"y": np.zeros(1, np.float32)})
    assert check.mismatch({"y": np.zeros(1, np.float32)}) is None  # a name, not a dtype or shape
