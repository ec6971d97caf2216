"""Hooks the serving layer calls when something worth counting happens, so upper layers can keep metrics.

The serving layer never imports the API or prometheus; it calls a
:class:`ServingObserver` it was given (by default one that does nothing).

    class Counting(ServingObserver):
        def model_loaded(self, name, version, seconds, error):
            print(name, version, "failed" if error else f"loaded in {seconds:.2f} s")

    manager = ModelManager(repository, runtime, observer=Counting())
"""

from __future__ import annotations

from ..errors import ServingError


class ServingObserver:
    """Called from the manager's and the request threads; implementations must be quick and thread-safe."""

    def model_loaded(self, name: str, version: int, seconds: float, error: ServingError | None) -> None:
        """A version finished loading (warmup included), or failed to (``error`` set)."""

    def batch_run(self, name: str, version: int, signature: str, requests: int, rows: int) -> None:
        """One batched signature call merged ``requests`` requests into ``rows`` rows (padding included)."""
