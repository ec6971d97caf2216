"""The servers the suite compares the appliance with, each run as ``python -m bench.servers.<name> --port N``."""
