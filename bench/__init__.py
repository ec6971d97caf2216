"""Benchmarks of the appliance.

``python bench/run.py`` (or ``python -m bench``) is the suite: the served API
against the raw signature call, an HTTP echo floor and the usual alternatives
(Flask, FastAPI), in one run. ``predict_latency.py`` and ``remote_proxy.py``
are single-question scripts.
"""
