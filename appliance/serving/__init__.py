"""The serving layer: model repositories, versions and their states, batching, and the runtimes that run them.

It never imports the API: HTTP and metrics sit above it (see :mod:`appliance.serving.observer`).

    manager = ModelManager(Repository(configs=[], roots=[Path("models")]), LocalTFRuntime(device="auto"))
    manager.start()
    with manager.acquire("digits") as handle:
        outputs = handle.servable.predict("serving_default", {"pixels": batch})
"""
