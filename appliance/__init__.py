"""appliance: serve TensorFlow SavedModels on a desktop over a local, TF Serving-compatible REST API.

    $ appliance                      # the desktop app: a tray icon, the models on http://127.0.0.1:8501
    $ appliance serve --rest_api_port 8501    # the same models, headless (see appliance.cli)

``serving`` loads and runs the models, ``api`` is the REST API and ``server`` serves it with waitress;
``application``, ``tray`` and ``cli`` make the desktop app and the command around them.
"""

__version__ = "0.1.0"
