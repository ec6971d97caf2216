"""The HTTP floor: Bottle on waitress answering every POST with a fixed small JSON.

    python -m bench.servers.echo --port 8600

The same server configuration as the appliance: waitress with the appliance's
default worker thread count (``appliance.config.DEFAULT_THREADS``, 32). It
reads the request body, as any handler must, and does nothing else.
"""

from __future__ import annotations

import argparse

import bottle
import waitress

from appliance.config import DEFAULT_THREADS

ANSWER = b'{"predictions": [{"class": 0}]}'

app = bottle.Bottle()


@app.post("/<path:path>")
def echo(path: str) -> bytes:
    bottle.request.body.read()
    bottle.response.content_type = "application/json"
    return ANSWER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=DEFAULT_THREADS)


if __name__ == "__main__":
    main()
