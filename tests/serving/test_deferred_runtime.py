"""DeferredRuntime: the runtime is made once, by whichever thread asks first, and the others wait for it."""

from __future__ import annotations

import threading
from pathlib import Path

from appliance.serving.runtime import STARTING, DeferredRuntime, DeviceInfo, Runtime, Servable


class _SlowRuntime(Runtime):
    """A runtime whose making takes a while (as TensorFlow's import does) and that counts how often it was made."""

    made = 0

    def __init__(self, release: threading.Event):
        release.wait(10)
        type(self).made += 1
        self.device = DeviceInfo("CPU", "test")

    def load(self, path: Path) -> Servable:
        raise AssertionError("not called here")


def test_threads_asking_at_once_get_the_one_runtime_made_by_the_first():
    release = threading.Event()
    deferred = DeferredRuntime(lambda: _SlowRuntime(release))
    assert deferred.device is STARTING
    got: list[Runtime] = []
    threads = [threading.Thread(target=lambda: got.append(deferred.make())) for _ in range(4)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(got) == 4 and all(runtime is got[0] for runtime in got)
    assert _SlowRuntime.made == 1 and deferred.device.name == "test"
