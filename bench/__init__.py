"""Benchmarks of the appliance.

``python bench/run.py`` (or ``python -m bench``) is the suite: the served API,
over REST and gRPC, against the raw signature call, HTTP and gRPC echo floors
and the usual alternatives (Flask, FastAPI), in one run. ``soak.py`` is the
soak test: minutes of mixed load with version switches and reloads, checked
for failures and leaks.
``profile.py`` samples the appliance under load with py-spy: top frames and a
flame graph. ``predict_latency.py`` and ``remote_proxy.py`` are
single-question scripts.
"""
