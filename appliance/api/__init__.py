"""The HTTP side of the appliance: only this package knows HTTP (Bottle routes, codec, security, metrics).

from appliance.api.app import create_app
wsgi_app = create_app(manager, max_request_bytes=64 << 20)
"""
