"""``bench/large_json.py`` serves images as nested lists and reports parse, decode and served times for each body.

The times of so short a run mean nothing; this checks that every body is measured and that the appliance's
answers over HTTP match the raw signature call on the same image.
"""

from __future__ import annotations

import json
import subprocess
import sys

from ..conftest import REPO


def test_large_json_bench_measures_every_body_and_answers_right(tmp_path):
    results = tmp_path / "large_json.json"
    done = subprocess.run(
        [sys.executable, "bench/large_json.py", "--calls", "2", "--json", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    rows = json.loads(results.read_text())["rows"]
    shapes = [[1, 224, 224, 3], [1, 360, 480, 3]]
    assert [(row["shape"], row["format"]) for row in rows] == [
        (shape, fmt) for shape in shapes for fmt in ("row", "columnar", "predict")
    ] + [(shapes[0], "row-uint8")]
    for row in rows:
        assert row["answer_matches_raw"], row
        assert row["served_ms"] > 0 and row["raw_ms"] > 0 and row["parse_decode_ms"] > 0 and row["orjson_ms"] > 0, row
        assert row["goal_ms"] == row["raw_ms"] + 1.5 * row["orjson_ms"]
        assert row["goal_met"] in (True, False)
    assert "goal: served <= raw call + 1.5 x orjson" in done.stdout
