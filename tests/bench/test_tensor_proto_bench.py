"""``bench/tensor_proto.py`` times the gRPC tensor codec beside TensorFlow's for each tensor and wire form.

The times of so short a run mean nothing; this checks that every tensor is measured in both forms.
"""

from __future__ import annotations

import json
import subprocess
import sys

from ..conftest import REPO


def test_tensor_proto_bench_measures_every_tensor_in_both_forms(tmp_path):
    results = tmp_path / "tensor_proto.json"
    done = subprocess.run(
        [sys.executable, "bench/tensor_proto.py", "--repeat", "1", "--json", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    rows = json.loads(results.read_text())["rows"]
    tensors = ["input (1, 64)", "output (1, 10)", "image (1, 224, 224, 3)"]
    assert [(row["tensor"], row["form"]) for row in rows] == [
        (tensor, form) for tensor in tensors for form in ("float_val", "tensor_content")
    ]
    for row in rows:
        assert row["to_array_us"] > 0 and row["from_array_us"] > 0 and row["tf_make_ndarray_us"] > 0, row
        assert (row["tf_make_tensor_proto_us"] is None) == (row["form"] == "float_val"), row
    assert "to_array" in done.stdout.splitlines()[0]
