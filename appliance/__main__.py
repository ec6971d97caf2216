"""``python -m appliance``: the same as the ``appliance`` command."""

from .cli import main

raise SystemExit(main())
