"""``python -m appliance``: the same as the ``appliance`` command.

$ python -m appliance serve --rest_api_port 8501    # as `appliance serve --rest_api_port 8501`
"""

from .cli import main

raise SystemExit(main())
