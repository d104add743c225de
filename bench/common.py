"""Shared bits of the benchmarks: Django set-up and the closing JSON line."""

import json
import os
import platform
import sys


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def print_result(result: dict) -> None:
    """The last line of every benchmark is one JSON object."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
