"""How two versions' answers to the same requests differ, output by output: what a comparison and shadow traffic
both report, so that their figures mean the same.

    tally = OutputTally()
    tally.add(first["probabilities"], second["probabilities"])    # one request's answers of both versions
    tally.report("serving_default", "probabilities").agreement      # -> 0.97 (rows whose argmax is the same)

Float outputs of rank >= 2 are scores: their rows agree when their argmax is the same. String, integer and boolean
outputs are classes: their rows agree when equal. Float outputs also get the mean and max absolute difference.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .runtime import DEFAULT_SIGNATURE


@dataclasses.dataclass(frozen=True)
class OutputReport:
    """How one output of one signature differs between the versions, over the requests both answered."""

    signature: str
    name: str
    predictions: int  # rows compared (a request of n rows makes n predictions)
    agreeing: int | None  # rows whose predicted class (argmax, or the value itself) is the same; None: not a class
    mean_abs_diff: float | None  # over every element of a float output; None for others
    max_abs_diff: float | None
    shape_mismatches: int  # requests whose output shapes differ (their rows count as disagreeing)

    @property
    def label(self) -> str:
        """The output's name, after its signature's unless that is serving_default: "class", "image/class"."""
        return self.name if self.signature == DEFAULT_SIGNATURE else f"{self.signature}/{self.name}"

    @property
    def agreement(self) -> float | None:
        return self.agreeing / self.predictions if self.agreeing is not None and self.predictions else None


class OutputTally:
    """Running figures of one output: :meth:`add` each pair of answers, :meth:`report` the figures so far."""

    def __init__(self) -> None:
        self.predictions = 0
        self.agreeing: int | None = None
        self.abs_sum = 0.0
        self.abs_count = 0
        self.abs_max: float | None = None
        self.shape_mismatches = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        rows = a.shape[0] if a.ndim else 1
        is_class = is_class_output(a) and is_class_output(b)
        if is_class and self.agreeing is None:
            self.agreeing = 0
        self.predictions += rows
        if a.shape != b.shape:
            self.shape_mismatches += 1
            return
        if is_class:
            classes = (a.argmax(axis=-1), b.argmax(axis=-1)) if a.dtype.kind == "f" else (a, b)
            same = (classes[0] == classes[1]).reshape(rows, -1).all(axis=1)
            self.agreeing = (self.agreeing or 0) + int(same.sum())
        if a.dtype.kind == "f" and b.dtype.kind == "f" and a.size:  # differences of class numbers mean nothing
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            self.abs_sum += float(diff.sum())
            self.abs_count += diff.size
            self.abs_max = max(self.abs_max or 0.0, float(diff.max()))

    def report(self, signature: str, name: str) -> OutputReport:
        mean = self.abs_sum / self.abs_count if self.abs_count else None
        return OutputReport(signature, name, self.predictions, self.agreeing, mean, self.abs_max, self.shape_mismatches)


def is_class_output(value: np.ndarray) -> bool:
    """Strings, integers and booleans are compared as they are; float scores of rank >= 2 by their argmax."""
    return value.dtype.kind in "OSUiub" or (value.dtype.kind == "f" and value.ndim >= 2)
