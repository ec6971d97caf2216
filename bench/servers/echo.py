"""The HTTP floor: Bottle on waitress (8 threads, as the appliance) answering every POST with a fixed small JSON.

    python -m bench.servers.echo --port 8600

It reads the request body, as any handler must, and does nothing else.
"""

from __future__ import annotations

import argparse

import bottle
import waitress

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
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=8)


if __name__ == "__main__":
    main()
