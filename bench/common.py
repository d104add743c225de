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


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def apt_install(package: str) -> None:
    """Install one Debian package, as scripts/bootstrap.sh and the test script do when one is missing."""
    import shutil
    import subprocess

    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise SystemExit(f"{package} is needed and apt-get is not available: install it")
    print(f"installing Debian's {package} package", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([apt_get, "update", "-qq"], check=True, env=env)
    subprocess.run(
        [apt_get, "install", "-y", "-qq", package], check=True, env=env, stdout=subprocess.DEVNULL
    )
