"""appliance: serve TensorFlow SavedModels on a desktop over a local, TF Serving-compatible REST API."""

__version__ = "0.1.0"
